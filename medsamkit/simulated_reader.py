"""Simulated reader: RECIST-style long/short axis lines drawn from a ground-truth label.

Stands in for a person in evaluation and tests (the MedSAM reader study drew these lines by hand
every 3-10 slices). On each chosen slice along numpy ``axis`` of a (K, J, I) label:

- long axis: the maximum Feret diameter, the longest segment between two pixel centres of the
  lesion (searched on the convex hull, in mm so anisotropic pixels are handled);
- short axis: the longest chord perpendicular to the long axis (pixels binned by their position
  along the long axis; the chord spans the bin's extent across it).

Chosen slices: the first lesion slice, then every ``every`` slices, and the last lesion slice
(a reader marks where the lesion starts and ends). Slices without lesion pixels are skipped.
Lines come back as :class:`~medsamkit.markers.Marker` in RAS mm.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry
from .markers import Marker
from .volume import extract_slice


def marked_slices(label: np.ndarray, axis: int, every: int) -> list[int]:
    """Slices along ``axis`` a simulated reader marks: first, every ``every``-th, and last lesion slice."""
    if every < 1:
        raise InputError(f"Mark every N slices needs N >= 1; got {every}.")
    other = tuple(a for a in range(3) if a != axis)
    present = np.nonzero(np.asarray(label).any(axis=other))[0]
    if present.size == 0:
        raise InputError("The label is empty: no lesion to draw axes on.")
    first, last = int(present[0]), int(present[-1])
    chosen = list(range(first, last + 1, every))
    if chosen[-1] != last:
        chosen.append(last)
    return [k for k in chosen if k in set(present.tolist())]


def axis_lines_2d(mask: np.ndarray, spacing_xy=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Long and short axis of a 2D (H, W) mask: two (2, 2) arrays of XY pixel endpoints.

    spacing_xy: pixel size (x, y) in mm, so "longest" and "perpendicular" are physical.
    Raises InputError for an empty mask.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise InputError("Cannot draw axes on an empty slice.")
    pix = np.stack([xs, ys], axis=1).astype(np.float64)
    scale = np.asarray(spacing_xy, dtype=np.float64)
    mm = pix * scale
    hull = _hull_points(mm)
    d = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    long_mm = np.stack([hull[a], hull[b]])
    length = float(d[a, b])
    if length == 0:  # a single pixel: both axes degenerate to that point
        return pix[[0, 0]], pix[[0, 0]]
    u = (long_mm[1] - long_mm[0]) / length
    v = np.array([-u[1], u[0]])
    pu, pv = (mm - long_mm[0]) @ u, (mm - long_mm[0]) @ v
    bin_width = float(min(scale))  # one pixel along the long axis
    bins = np.floor(pu / bin_width + 0.5).astype(np.int64)
    best, best_len = None, -1.0
    for key in np.unique(bins):
        sel = bins == key
        extent = float(pv[sel].max() - pv[sel].min())
        if extent > best_len:
            best_len, best = extent, key
    sel = bins == best
    i_lo, i_hi = np.nonzero(sel)[0][[np.argmin(pv[sel]), np.argmax(pv[sel])]]
    short_mm = mm[[i_lo, i_hi]]
    return long_mm / scale, short_mm / scale


def _hull_points(points: np.ndarray) -> np.ndarray:
    if len(points) < 4:
        return points
    try:
        from scipy.spatial import ConvexHull

        return points[ConvexHull(points).vertices]
    except Exception:  # collinear pixels (a one-pixel-wide lesion): every point is on the "hull"
        return points


def simulate_markers(label: np.ndarray, geometry: VolumeGeometry, axis: int = 0, every: int = 5,
                     slices: "list[int] | None" = None) -> list[Marker]:
    """Long and short axis lines (RAS mm) on the slices a reader would mark (module docstring).

    label: (K, J, I) array, non-zero = lesion; slices: mark exactly these (default
    :func:`marked_slices`). Returns 2 markers per marked slice, named ``long_<k>`` / ``short_<k>``.
    """
    label = np.asarray(label) != 0
    if label.shape != tuple(geometry.shape):
        raise InputError(f"Label shape {label.shape} does not match the volume shape {tuple(geometry.shape)}.")
    chosen = marked_slices(label, axis, every) if slices is None else list(slices)
    spacing = geometry.slice_spacing_xy(axis)
    markers = []
    for k in chosen:
        plane = extract_slice(label, k, axis)
        if not plane.any():
            continue
        for name, xy in zip(("long", "short"), axis_lines_2d(plane, spacing)):
            ras = geometry.ijk_to_ras_points(geometry.slice_to_ijk(xy, k, axis))
            markers.append(Marker(ras[0], ras[1], f"{name}_{k}"))
    return markers
