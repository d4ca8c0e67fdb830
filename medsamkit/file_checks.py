"""Checks a file gets before its voxels are trusted: the readers fill what is missing with zeros.

- :func:`check_nrrd_complete`: an attached-data NRRD (raw or gzip) must hold every voxel its header
  declares; ITK's reader reports some truncations and zero-fills others.
- :func:`nifti_nonfinite`: ITK's NIfTI reader turns NaN voxels of a float file into 0, so the one
  NaN/Inf rule (:func:`medsamkit.preprocess.check_finite`) would never see them; this finds them in
  the file's own bytes so :func:`medsamkit.io.read_image` can put them back.
- :func:`read_label_file`: a segmentation/label file through the same checks as an image.

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

_NRRD_TYPES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
               2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                   "unsigned short", "unsigned short int", "uint16", "uint16_t"),
               4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
               8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                   "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                   "double")}
_TYPE_SIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
#: NIfTI datatype codes of float32 / float64 voxels.
_NIFTI_FLOATS = {16: np.float32, 64: np.float64}


def _truncated(path, declared: int, have: int) -> InputError:
    return InputError(f"Cannot read {path}: it is truncated; its header declares {declared} bytes of voxels but the "
                      f"file holds only {have}. Copy or export it again; medsamkit does not fill missing voxels with "
                      "zeros.")


def _nrrd_header(f, path) -> "tuple[dict, int]":
    """({field: value}, header length in bytes) of an NRRD file; empty dict when it is not one."""
    magic = f.readline(64)
    if not magic.startswith(b"NRRD"):
        return {}, 0
    fields, size = {}, len(magic)
    while True:
        line = f.readline(1 << 16)
        size += len(line)
        if not line:
            raise InputError(f"Cannot read {path}: it is truncated inside its NRRD header. Copy or export it again.")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return fields, size
        if text.startswith("#") or ":=" in text:
            continue
        key, sep, value = text.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()


def check_nrrd_complete(path: "str | os.PathLike") -> None:
    """Refuse an NRRD file whose attached raw/gzip voxel data is shorter than its header declares."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            fields, head_len = _nrrd_header(f, path)
            if not fields or "data file" in fields or "datafile" in fields:
                return  # not NRRD, or detached data: the reader decides
            size = _TYPE_SIZE.get(fields.get("type", "").lower())
            try:
                sizes = [int(v) for v in fields.get("sizes", "").split()]
            except ValueError:
                return
            encoding = fields.get("encoding", "").lower()
            if size is None or not sizes or any(v < 0 for v in sizes) or encoding not in ("raw", "gzip", "gz"):
                return
            declared = size * int(np.prod(sizes, dtype=np.int64))
            if encoding == "raw":
                have = os.fstat(f.fileno()).st_size - head_len
            else:
                have = 0
                with gzip.GzipFile(fileobj=f, mode="rb") as z:
                    while have < declared:
                        chunk = z.read(1 << 20)
                        if not chunk:
                            break
                        have += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"Cannot read {path}: it is truncated or damaged ({exc}). Copy or export it again.") from exc
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if have < declared:
        raise _truncated(path, declared, have)


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
    elif suf in (".nrrd", ".seg.nrrd"):
        check_nrrd_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"Cannot read the segmentation {path}: {lines[-1][:200] if lines else 'unreadable'}. Give a "
                         ".seg.nrrd, .nii.gz or .nrrd written by medsamkit or Slicer.") from exc
