"""Coordinate conventions end to end: a box drawn in RAS on a non-square, non-isotropic slice of a rotated
volume lands on the right pixels.

A synthetic volume holds one bright object whose voxel position is known. The "user" draws a box
around it in physical (RAS) coordinates on a coronal slice, as Slicer would record it; the box goes
RAS -> IJK -> slice XY (medsamkit.geometry), the slice is segmented by the real LiteMedSAM
(longest side 160 -> 256, so the 30-row slice becomes 48 rows) and the mask must cover the object
on that slice and nothing else. A row/column swap, a flipped axis, a wrong slice axis or a wrong
scale would each move the box off the object (it sits off-centre in a 30×160 slice).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medsamkit.geometry import VolumeGeometry
from medsamkit.io import ImageData
from medsamkit.backend.local import LocalBackend
from medsamkit.segment import segment_image

SHAPE = (30, 70, 160)          # (K, J, I)
SPACING = (0.6, 0.9, 2.5)      # mm along i, j, k: slice pixels are 0.6 mm wide and 2.5 mm tall
CENTRE_IK = (112.0, 16.0)      # object centre (i, k) in voxels, off-centre
RADII_IK = (20.0, 5.0)         # 12 mm x 12.5 mm: round in mm, 4:1 in pixels
J_RANGE = (20, 50)
SLICE_J = 35


def _rotation() -> np.ndarray:
    """Direction matrix (columns = i, j, k axes in LPS): 25° about S, then 10° about L."""
    a, b = np.deg2rad(25.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ rz


def _object_mask() -> np.ndarray:
    k, _, i = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), np.arange(SHAPE[2]), indexing="ij")
    inside = ((i - CENTRE_IK[0]) / RADII_IK[0]) ** 2 + ((k - CENTRE_IK[1]) / RADII_IK[1]) ** 2 <= 1.0
    j = np.arange(SHAPE[1])[None, :, None]
    return inside & (j >= J_RANGE[0]) & (j <= J_RANGE[1])


@pytest.fixture(scope="module")
def volume_case():
    obj = _object_mask()
    rng = np.random.default_rng(7)
    data = (rng.normal(100.0, 12.0, SHAPE) + 260.0 * obj).astype(np.float32)
    direction = tuple(_rotation().reshape(-1))
    image = ImageData(data, spacing=SPACING, origin=(-40.0, 25.0, -110.0), direction=direction, modality="MR")
    return image, obj, VolumeGeometry(SHAPE, SPACING, image.origin, direction)


def test_box_drawn_in_ras_lands_on_the_object(shared_predictor, volume_case):
    image, obj, geometry = volume_case
    ys, xs = np.nonzero(obj[:, SLICE_J, :])  # slice rows = k, columns = i
    corners_ijk = np.array([[xs.min() - 3, SLICE_J, ys.min() - 2], [xs.max() + 3, SLICE_J, ys.max() + 2]], float)
    corners_ras = geometry.ijk_to_ras_points(corners_ijk)  # what the user's box markup stores

    # The engine path: RAS -> IJK -> slice pixels of the coronal plane of this rotated volume.
    ijk = geometry.ras_to_ijk_points(corners_ras)
    index, xy = geometry.ijk_to_slice(ijk, axis=1)
    assert np.allclose(index, SLICE_J)
    box = [xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()]
    res = segment_image(LocalBackend(predictor=shared_predictor), image, box=box, slice_index=SLICE_J, axis="coronal",
                        normalization="percentile")

    assert res.axis == 1 and res.slice_mask.shape == (SHAPE[0], SHAPE[2])
    truth = obj[:, SLICE_J, :]
    assert dice(res.slice_mask, truth) > 0.85
    cy, cx = np.argwhere(res.slice_mask).mean(axis=0)
    assert abs(cx - CENTRE_IK[0]) < 2.0 and abs(cy - CENTRE_IK[1]) < 1.0  # centroid on the object, in pixels
    assert res.mask[:, SLICE_J, :].sum() == res.slice_mask.sum()
    assert res.mask.sum() == res.slice_mask.sum()  # only that slice is written back into the 3D mask
