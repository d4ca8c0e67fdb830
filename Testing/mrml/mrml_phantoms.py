"""Synthetic volumes for the MRML-layer tests (oblique, anisotropic, with a known object)."""
from __future__ import annotations

import numpy as np


def rotation(z_deg: float, x_deg: float) -> np.ndarray:
    """Rotation about z then x (3, 3): the oblique directions of the example volumes."""
    a, b = np.deg2rad(z_deg), np.deg2rad(x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def ijk_to_ras(direction: np.ndarray, spacing, origin) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction) * np.asarray(spacing, dtype=float)
    m[:3, 3] = origin
    return m


def ellipsoid_phantom(shape=(40, 96, 80), centre=(20, 50, 38), radii=(9, 22, 15), seed=0):
    """(volume int16 (K, J, I), label uint8): a bright ellipsoid (~300) in noisy tissue (~40) with air around.

    Radii are in voxels along (k, j, i); high contrast so that LiteMedSAM segments it reliably.
    """
    rng = np.random.default_rng(seed)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = (((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2
              + ((i - centre[2]) / radii[2]) ** 2) <= 1.0
    vol = rng.normal(40, 12, shape)
    vol[:, :6, :] = -900  # a strip of air so that the data look like CT to 'auto'
    vol[inside] = rng.normal(300, 12, int(inside.sum()))
    return vol.astype(np.int16), inside.astype(np.uint8)
