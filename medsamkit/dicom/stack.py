"""Whether parallel slices stack into one regular volume: the check that classic series (one file per slice)
and multi-frame images (one frame per slice) share, with one set of messages."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import GAP_TOLERANCE


def stack_slices(where: str, names: list, positions: np.ndarray,
                 normal: np.ndarray) -> tuple[np.ndarray, "tuple[np.ndarray, float] | None"]:
    """Slice positions (N, 3) LPS mm on planes with this ``normal`` -> (their order along the normal, and for
    two or more slices (unit vector from the first slice to the last, slice spacing mm); None for one slice).

    where: the series as the messages name it ("Series 1.2.3", a file); names: each slice's name, in the
    order of ``positions`` (a file name, "frame 3"). Raises InputError, saying what to do, for two slices at
    one position, uneven gaps (a slice missing) and slices stacked obliquely to their planes (gantry tilt):
    none of them is one regular volume. Slices are ordered by position only, never by name or number."""
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if len(order) < 2:
        return order, None
    positions, along = positions[order], along[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        n = int(np.argmin(gaps))
        raise InputError(f"{where}: {names[order[n]]} and {names[order[n + 1]]} lie at the same position (a "
                         "duplicate slice, or several echoes or phases in one series); remove the duplicates or "
                         "export one volume per echo or phase.")
    if np.max(np.abs(gaps - gaps.mean())) > GAP_TOLERANCE * gaps.mean():
        raise InputError(f"{where}: uneven slice gaps ({gaps.min():.3f}..{gaps.max():.3f} mm); slices are missing or "
                         "the series is not one regular volume. Export the complete series.")
    kdir = (positions[-1] - positions[0]) / np.linalg.norm(positions[-1] - positions[0])
    if abs(float(kdir @ normal)) < 0.999:
        raise InputError(f"{where}: slices are stacked obliquely to their planes (gantry tilt); resample the series "
                         "to a regular grid first.")
    return order, (kdir, float(gaps.mean()))
