"""A synthetic "tumour": an ellipsoid, rotated against the voxel axes, in an oblique anisotropic volume.

Used by the marker tests. Everything is built from a seed, so it is the same on every run.
"""
from __future__ import annotations

import numpy as np

from medsamkit.geometry import VolumeGeometry
from medsamkit.io import ImageData


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def make_phantom(shape=(24, 56, 56), spacing=(0.9, 0.8, 2.5), semi_axes_mm=(13.0, 8.5, 19.0), seed=0):
    """(ImageData with int16 MR-like intensities, uint8 (K, J, I) label, VolumeGeometry).

    The volume's direction is oblique (30 degrees about z, then 15 about x); the ellipsoid is
    rotated by another 35 degrees about a tilted axis, so its cross-sections are rotated ellipses
    in the slices' own pixel frame and its centre sits at the volume centre.
    """
    direction = rotation([0, 0, 1], 30) @ rotation([1, 0, 0], 15)
    origin = np.array([-20.0, 15.0, -40.0])
    geometry = VolumeGeometry(tuple(shape), tuple(spacing), tuple(origin), tuple(direction.reshape(-1)))
    k, j, i = np.indices(shape, dtype=np.float64)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    lps = ijk @ (direction * np.asarray(spacing)).T + origin
    centre_ijk = (np.array(shape[::-1], dtype=float) - 1) / 2
    centre = centre_ijk @ (direction * np.asarray(spacing)).T + origin
    rot = rotation([1, 0.5, 0.2], 35) @ direction  # ellipsoid axes: tilted against the voxel axes
    local = (lps - centre) @ rot
    inside = np.sum((local / np.asarray(semi_axes_mm)) ** 2, axis=1) <= 1.0
    label = inside.reshape(shape).astype(np.uint8)
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), (0.5, 2, 2)) * 60
    image = 400 + texture + 500 * ndimage.gaussian_filter(label.astype(float), (0.3, 0.8, 0.8))
    image += rng.normal(0, 15, shape)
    data = ImageData(np.clip(image, 0, 4000).astype(np.int16), tuple(spacing), tuple(origin),
                     tuple(direction.reshape(-1)), modality="MR")
    return data, label, geometry


def write_phantom(folder, **kwargs):
    """Write the phantom as phantom.nii.gz / phantom_label.nii.gz; returns (image path, label, geometry)."""
    import SimpleITK as sitk

    data, label, geometry = make_phantom(**kwargs)
    img = sitk.GetImageFromArray(data.array)
    img.SetSpacing(data.spacing)
    img.SetOrigin(data.origin)
    img.SetDirection(data.direction)
    path = folder / "phantom.nii.gz"
    sitk.WriteImage(img, str(path))
    return path, label, geometry
