"""Checks a file gets before its voxels are trusted: some readers silently put zeros where data is missing.

- :func:`nifti_nonfinite`: ITK's NIfTI reader turns NaN voxels of a float file into 0, so the one
  NaN/Inf rule (:func:`medsamkit.preprocess.check_finite`) would never see them; this finds them in
  the file's own bytes so :func:`medsamkit.io.read_image` can put them back.
- :func:`read_label_file`: a segmentation/label file through the same checks as an image (a NIfTI
  file's length against its header; ITK's NRRD reader itself refuses a raw or gzip NRRD cut short).

Raises :class:`~medsamkit.errors.InputError` naming the file and what to do.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from .errors import InputError

#: NIfTI datatype codes of float32 / float64 voxels.
_NIFTI_FLOATS = {16: np.float32, 64: np.float64}


def nifti_nonfinite(path: "str | os.PathLike") -> "tuple[np.ndarray, np.ndarray]":
    """(flat voxel indices, values) of the NaN/Inf voxels of a float32/float64 NIfTI file (empty otherwise).

    Flat indices follow the file's voxel order, which is SimpleITK's numpy ``[k, j, i]`` C order."""
    empty = (np.zeros(0, np.int64), np.zeros(0))
    path = Path(path)
    gz = path.name.lower().endswith(".gz")
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        head = f.read(544)
        layout = _float_layout(head)
        if layout is None:
            return empty
        offset, dtype = layout
        if offset > len(head):
            f.read(offset - len(head))
        pending, base, found_i, found_v = head[offset:], 0, [], []
        item = np.dtype(dtype).itemsize
        while True:
            chunk = f.read(4 << 20)
            data = pending + chunk
            usable = len(data) - len(data) % item
            values = np.frombuffer(data[:usable], dtype=dtype)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                found_i.append(bad + base)
                found_v.append(values[bad].astype(np.float64))
            base += values.size
            pending = data[usable:]
            if not chunk:
                break
    if not found_i:
        return empty
    return np.concatenate(found_i), np.concatenate(found_v)


def _float_layout(head: bytes) -> "tuple[int, np.dtype] | None":
    """(voxel offset, numpy dtype with the file's byte order) of a float NIfTI-1/-2 header, else None."""
    if len(head) < 348:
        return None
    for order in ("<", ">"):
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            code = struct.unpack(order + "h", head[70:72])[0]
            offset = max(int(struct.unpack(order + "f", head[108:112])[0]), 352)
            break
        if size == 540 and len(head) >= 544:
            code = struct.unpack(order + "h", head[12:14])[0]
            offset = max(int(struct.unpack(order + "q", head[168:176])[0]), 544)
            break
    else:
        return None
    if code not in _NIFTI_FLOATS:
        return None
    return offset, np.dtype(_NIFTI_FLOATS[code]).newbyteorder(order)


def read_label_file(path: "str | os.PathLike"):
    """A segmentation or label file as a SimpleITK image, after the checks :func:`medsamkit.io.read_image`
    applies (exists, not truncated); InputError otherwise."""
    import SimpleITK as sitk

    from .io import check_nifti_complete, suffix_of

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation not found: {path}" if not path.exists() else
                         f"{path} is a folder; give a segmentation file (.seg.nrrd, .nii.gz, .nrrd).")
    suf = suffix_of(path)
    if suf in (".nii", ".nii.gz"):
        check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"Cannot read the segmentation {path}: {lines[-1][:200] if lines else 'unreadable'}. Give a "
                         ".seg.nrrd, .nii.gz or .nrrd written by medsamkit or Slicer.") from exc
