"""Slices of 3D volumes: which voxel axis an anatomical plane is, and slice <-> volume mapping.

A volume array is ``[k, j, i]`` (SimpleITK order). A slice along numpy axis ``a`` is the 2D
array with that axis removed, keeping the others in order, so its rows/cols are:

=============  ===========  =================  ==============
numpy axis a   slice shape  slice X (column)   slice Y (row)
=============  ===========  =================  ==============
0 (k)          (J, I)       i                  j
1 (j)          (K, I)       i                  k
2 (i)          (K, J)       j                  k
=============  ===========  =================  ==============

Anatomical plane names (axial/coronal/sagittal) are resolved with the volume's direction matrix:
axial slices are perpendicular to the voxel axis that points most along S (LPS z), coronal to
the one most along P (y), sagittal to the one most along L (x). For a volume stored in the usual
orientation this is numpy axis 0 / 1 / 2.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

PLANES = ("axial", "coronal", "sagittal")
_WORLD_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # LPS component each plane is normal to


def numpy_axis(plane: "str | int", direction=None) -> int:
    """Plane name (or a numpy axis 0..2) -> numpy axis of a (k, j, i) array.

    direction: row-major 3x3 direction matrix (SimpleITK), columns = voxel axes i, j, k in LPS.
    """
    if isinstance(plane, (int, np.integer)):
        if plane not in (0, 1, 2):
            raise InputError(f"Slice axis must be 0, 1 or 2 (numpy order k, j, i); got {plane}.")
        return int(plane)
    name = str(plane).strip().lower()
    if name not in _WORLD_AXIS:
        raise InputError(f"Unknown slice axis '{plane}'. Use axial, coronal or sagittal.")
    if direction is None:
        return {"axial": 0, "coronal": 1, "sagittal": 2}[name]
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    voxel_axis = int(np.argmax(np.abs(d[_WORLD_AXIS[name], :])))  # 0=i, 1=j, 2=k
    return 2 - voxel_axis


def extract_slice(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Copy of slice ``index`` along numpy ``axis`` of a 3D array; InputError if out of range."""
    if volume.ndim != 3:
        raise InputError(f"Expected a 3D volume, got an array of shape {volume.shape}.")
    n = volume.shape[axis]
    if not (0 <= int(index) < n):
        raise InputError(f"Slice {index} is outside the volume: axis {axis} has slices 0..{n - 1}.")
    return np.take(volume, int(index), axis=axis).copy()


def put_slice(target: np.ndarray, mask2d: np.ndarray, index: int, axis: int) -> None:
    """Write a 2D mask into slice ``index`` along ``axis`` of a 3D array (in place)."""
    sl = [slice(None)] * 3
    sl[axis] = int(index)
    target[tuple(sl)] = mask2d
