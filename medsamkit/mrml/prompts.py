"""A box or points drawn in world RAS on a slice view -> pixel prompts for the engine.

The conversion is RAS (mm) -> continuous IJK (the volume's world matrix, :mod:`medsamkit.geometry`)
-> the slice's XY pixels (:meth:`VolumeGeometry.ijk_to_slice`): x and y are the slice array's column
and row, as everywhere in the engine (:mod:`medsamkit.prompts`). Nothing is rounded: a corner placed
on a voxel centre gives an integer pixel coordinate, one placed on a voxel edge gives ``n + 0.5``.

Every point must lie on the shown slice (within half a voxel along the slice axis); anything else is
an :class:`InputError`, because a prompt off the slice would silently segment the wrong image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..geometry import VolumeGeometry
from .volumes import ViewSlice

ON_SLICE_TOLERANCE_VOXELS = 0.5


@dataclass
class SlicePrompt:
    """Prompts for one slice, in that slice's XY pixels.

    box: (4,) XYXY (x0 < x1, y0 < y1) or None; points: (N, 2) XY or None; labels: (N,) 1 = foreground,
    0 = background, or None.
    """

    view: ViewSlice
    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None


def ras_to_slice_pixels(geometry: VolumeGeometry, view: ViewSlice, points_ras) -> np.ndarray:
    """(N, 3) world RAS mm -> (N, 2) XY pixels of ``view``'s slice; InputError for points off the slice."""
    pts = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if not np.isfinite(pts).all():
        raise InputError("A prompt position is not a finite RAS coordinate.")
    ijk = geometry.ras_to_ijk_points(pts)
    along, xy = geometry.ijk_to_slice(ijk, view.axis)
    off = np.abs(along - view.index)
    if (off > ON_SLICE_TOLERANCE_VOXELS).any():
        worst = float(off.max())
        raise InputError(f"A prompt lies {worst:.1f} voxels away from the slice shown (slice {view.index}); "
                         "draw boxes and points in the slice view you are segmenting.")
    return xy


def box_from_ras(geometry: VolumeGeometry, view: ViewSlice, corner_a_ras, corner_b_ras) -> np.ndarray:
    """Two opposite corners of a box dragged in a slice view (world RAS mm) -> (4,) XYXY slice pixels.

    The corners may come in any order (drag direction does not matter); the box is their pixel
    bounding rectangle. The engine clips it to the image and rejects one without area.
    """
    xy = ras_to_slice_pixels(geometry, view, np.vstack([corner_a_ras, corner_b_ras]))
    return np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
