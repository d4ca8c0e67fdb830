"""Which files medsamkit reads and writes, told by the end of their name.

A name's suffix is its format: ``.seg.nrrd`` and ``.nii.gz`` count as one suffix each, letter case
does not matter. The readers, the writers and the write checks all ask :func:`suffix_of`.
"""
from __future__ import annotations

import os
from pathlib import Path

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".png")
#: Image files a write is checked by reading them back (SimpleITK).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")


def suffix_of(path: "str | os.PathLike") -> str:
    name = Path(path).name.lower()
    for suf in (".seg.nrrd", ".nii.gz"):
        if name.endswith(suf):
            return suf
    return Path(name).suffix
