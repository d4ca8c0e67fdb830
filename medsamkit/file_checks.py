"""Checks a file gets before its voxels are trusted: some readers silently put zeros where data is missing.

- :func:`nifti_nonfinite`: ITK's NIfTI reader turns NaN voxels of a float file into 0, so the one
  NaN/Inf rule (:func:`medsamkit.preprocess.check_finite`) would never see them; this finds them in
  the file's own bytes so :func:`medsamkit.io.read_image` can put them back.
- :func:`read_label_file`: a segmentation/label file through the same checks as an image (a NIfTI
  file's length against its header; ITK's NRRD reader itself refuses a raw or gzip NRRD cut short).
- :func:`check_nifti_complete` / :func:`nifti_layout`: a NIfTI file's voxel bytes against its header
  (SimpleITK and Slicer zero-fill a truncated file); :mod:`medsamkit.io` uses them for every read.

Raises :class:`~medsamkit.errors.InputError` naming the file and what to do.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
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

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation not found: {path}" if not path.exists() else
                         f"{path} is a folder; give a segmentation file (.seg.nrrd, .nii.gz, .nrrd).")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"Cannot read the segmentation {path}: {lines[-1][:200] if lines else 'unreadable'}. Give a "
                         ".seg.nrrd, .nii.gz or .nrrd written by medsamkit or Slicer.") from exc


def check_nifti_complete(path: "str | os.PathLike") -> None:
    """Refuse a NIfTI file (.nii or .nii.gz) that holds fewer voxel bytes than its header declares.

    SimpleITK reads a truncated file without error and fills the missing voxels with zeros. The
    header (NIfTI-1 or -2) gives the voxel offset, dimensions and bits per voxel; the file (after
    gzip decompression, streamed) must be at least that long, and a gzip stream must be complete.
    """
    path = Path(path)
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(540)
            expected = _nifti_expected_bytes(head, path)
            if expected is None:
                return  # not a header we know; let the reader decide
            have = len(head)
            while have < expected:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                have += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"Cannot read {path}: it is truncated or damaged ({exc}). Copy or export it "
                         "again.") from exc
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if have < expected:
        raise InputError(f"Cannot read {path}: it is truncated; its header declares {expected} bytes of header and voxels but the "
                         f"file holds only {have}. Copy or export it again; medsamkit does not fill missing voxels "
                         "with zeros.")


def _nifti_expected_bytes(head: bytes, path: Path) -> "int | None":
    layout = nifti_layout(head, path)
    return None if layout is None else layout[0] + layout[1]


def nifti_layout(head: bytes, path: Path) -> "tuple[int, int] | None":
    """(voxel offset, voxel bytes) from a NIfTI-1/-2 header, or None when it is not one we know."""
    if len(head) < 348:
        raise InputError(f"Cannot read {path}: it is truncated ({len(head)} bytes, shorter than a NIfTI header).")
    for order in ("<", ">"):
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            dims = struct.unpack(order + "8q", head[16:80])
            offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1:ndim + 1]):
        return None
    offset = max(offset, 352 if size == 348 else 544)
    count = 1
    for d in dims[1:ndim + 1]:
        count *= max(int(d), 1)
    return offset, count * bitpix // 8
