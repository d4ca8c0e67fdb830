"""Reading a just-written file back before it replaces its target.

Every image file :func:`medsamkit.io.atomic_output` writes is read back here and compared with what was
meant to be in it, because a writer can fail without saying so; a difference is an
:class:`~medsamkit.errors.OutputError`.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..file_checks import check_nifti_complete, nifti_layout
from .formats import suffix_of


def verify_image_file(path: "str | os.PathLike", expected: "np.ndarray | None") -> None:
    """Read a just-written image file back and compare it with ``expected`` (OutputError if it differs).

    SimpleITK's NIfTI writer reports no error when the disk fills: the file is cut short and a
    reader silently zero-fills the rest. The NIfTI length check and the voxel comparison catch it.
    """
    import SimpleITK as sitk

    path = Path(path)
    if expected is not None and expected.dtype.itemsize == 1 and suffix_of(path) in (".nii", ".nii.gz"):
        return _verify_nifti_voxels(path, expected)  # one streamed pass: length, gzip CRC and voxels
    try:
        if suffix_of(path) in (".nii", ".nii.gz"):
            check_nifti_complete(path)
        back = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except (InputError, RuntimeError) as exc:
        raise OutputError("the written file is cut short or does not read back (is the disk full?).") from exc
    if expected is not None and (back.shape != expected.shape or not np.array_equal(back, expected)):
        raise OutputError("the written file reads back with other values than were written (is the disk full?).")


def _verify_nifti_voxels(path: Path, expected: np.ndarray) -> None:
    """Compare a just-written single-byte NIfTI's voxel bytes with ``expected`` while decompressing it once."""
    data = memoryview(np.ascontiguousarray(expected)).cast("B")
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(540)
            layout = nifti_layout(head, path)
            if layout is None or layout[1] != len(data):
                raise OutputError("the written file does not hold the expected voxels.")
            offset = layout[0]
            if offset > len(head) and len(f.read(offset - len(head))) != offset - len(head):
                raise OutputError("the written file is cut short (is the disk full?).")
            pending, pos = head[offset:], 0
            while True:
                chunk, pending = (pending, b"") if pending else (f.read(4 << 20), b"")
                if not chunk:
                    break
                if len(chunk) > len(data) - pos or chunk != data[pos:pos + len(chunk)]:
                    raise OutputError("the written file reads back with other values than were written "
                                      "(is the disk full?).")
                pos += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error, InputError, OSError) as exc:
        raise OutputError("the written file is cut short or does not read back (is the disk full?).") from exc
    if pos != len(data):
        raise OutputError("the written file is cut short (is the disk full?).")


def _verify_png(path: str, expected: np.ndarray) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            back = np.asarray(im)
    except OSError as exc:
        raise OutputError("the written PNG is cut short or does not read back (is the disk full?).") from exc
    if back.shape != expected.shape or not np.array_equal(back, expected):
        raise OutputError("the written PNG reads back with other values than were written (is the disk full?).")
