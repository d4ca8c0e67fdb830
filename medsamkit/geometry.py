"""Volume geometry: voxel index (IJK) <-> physical RAS/LPS millimetres, and slice pixels <-> IJK.

The single place where IJK <-> RAS is computed in the engine (the mrml layer gets the same matrix
from the volume node and must agree; tests check that).

Frames:
- IJK: continuous voxel index (i, j, k); voxel centres at integers. numpy arrays are ``[k, j, i]``.
- LPS: what SimpleITK/NIfTI/NRRD files store: ``lps = origin + direction @ (spacing * ijk)``.
- RAS: what Slicer uses in memory (markups, slice views): ``ras = diag(-1, -1, 1) @ lps``.
- Slice pixels: XY of a 2D slice along numpy axis a (see volume.py): axis 0 -> (x, y) = (i, j);
  axis 1 -> (i, k); axis 2 -> (j, k).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# For a slice along numpy axis a: which IJK components are the slice's X and Y, and which is the slice index.
SLICE_XY_IJK = {0: (0, 1), 1: (0, 2), 2: (1, 2)}
SLICE_INDEX_IJK = {0: 2, 1: 1, 2: 0}


@dataclass(frozen=True)
class VolumeGeometry:
    shape: tuple          # numpy shape (K, J, I)
    spacing: tuple        # (si, sj, sk) mm
    origin: tuple         # LPS mm of voxel (0, 0, 0)
    direction: tuple      # row-major 3x3, columns = unit vectors of i, j, k in LPS

    @staticmethod
    def from_image(image) -> "VolumeGeometry":
        """From an :class:`medsamkit.io.ImageData` holding a 3D volume."""
        if not image.is_3d:
            raise InputError("Volume geometry needs a 3D image.")
        return VolumeGeometry(tuple(image.array.shape), tuple(map(float, image.spacing)),
                              tuple(map(float, image.origin)), tuple(map(float, image.direction)))

    @staticmethod
    def from_ijk_to_ras(matrix, shape) -> "VolumeGeometry":
        """From a 4x4 IJK->RAS matrix (as a Slicer volume node gives it) and the (K, J, I) shape."""
        m = np.asarray(matrix, dtype=float).reshape(4, 4)
        lin = LPS_TO_RAS @ m[:3, :3]
        spacing = np.linalg.norm(lin, axis=0)
        direction = lin / spacing
        origin = LPS_TO_RAS @ m[:3, 3]
        return VolumeGeometry(tuple(shape), tuple(spacing), tuple(origin), tuple(direction.reshape(-1)))

    @property
    def ijk_to_lps(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing, dtype=float)
        m[:3, 3] = self.origin
        return m

    @property
    def ijk_to_ras(self) -> np.ndarray:
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        return flip @ self.ijk_to_lps

    def ras_to_ijk_points(self, ras) -> np.ndarray:
        """(N, 3) RAS mm -> (N, 3) continuous IJK."""
        pts = np.asarray(ras, dtype=float).reshape(-1, 3)
        inv = np.linalg.inv(self.ijk_to_ras)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def ijk_to_ras_points(self, ijk) -> np.ndarray:
        pts = np.asarray(ijk, dtype=float).reshape(-1, 3)
        m = self.ijk_to_ras
        return pts @ m[:3, :3].T + m[:3, 3]

    def contains_ijk(self, ijk, tol: float = 0.5) -> np.ndarray:
        """(N,) bool: inside the voxel grid (voxel centres 0..n-1, +/- tol voxels)."""
        pts = np.asarray(ijk, dtype=float).reshape(-1, 3)
        upper = np.array(self.shape[::-1], dtype=float) - 1 + tol
        return np.all((pts >= -tol) & (pts <= upper), axis=1)

    def slice_spacing_xy(self, axis: int) -> tuple[float, float]:
        """Pixel size (mm) of a slice along numpy ``axis``: (x spacing, y spacing)."""
        ax_x, ax_y = SLICE_XY_IJK[axis]
        return float(self.spacing[ax_x]), float(self.spacing[ax_y])

    def ijk_to_slice(self, ijk, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) IJK -> (slice coordinate (N,), XY pixels (N, 2)) for slices along numpy ``axis``."""
        pts = np.asarray(ijk, dtype=float).reshape(-1, 3)
        ax_x, ax_y = SLICE_XY_IJK[axis]
        return pts[:, SLICE_INDEX_IJK[axis]], pts[:, [ax_x, ax_y]]

    def slice_to_ijk(self, xy, index: float, axis: int) -> np.ndarray:
        """XY pixels (N, 2) on slice ``index`` along numpy ``axis`` -> (N, 3) IJK."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        out = np.empty((len(xy), 3))
        ax_x, ax_y = SLICE_XY_IJK[axis]
        out[:, ax_x], out[:, ax_y] = xy[:, 0], xy[:, 1]
        out[:, SLICE_INDEX_IJK[axis]] = index
        return out
