"""Slices along any axis and IJK <-> RAS agree with SimpleITK's own geometry."""
import numpy as np
import pytest
import SimpleITK as sitk

from medsamkit.errors import InputError
from medsamkit.geometry import VolumeGeometry
from medsamkit.io import read_image
from medsamkit.backend.local import LocalBackend
from medsamkit.segment import segment_image
from medsamkit.volume import extract_slice, numpy_axis, put_slice


def _rotation(ax_deg, az_deg):
    a, b = np.deg2rad(ax_deg), np.deg2rad(az_deg)
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return rx @ rz


def test_ijk_to_ras_matches_simpleitk(tmp_path):
    img = sitk.Image(7, 6, 5, sitk.sitkInt16)
    img.SetSpacing((0.6, 1.1, 3.0))
    img.SetOrigin((12.0, -40.0, 7.5))
    img.SetDirection(tuple(_rotation(15, 30).ravel()))
    path = tmp_path / "v.nrrd"
    sitk.WriteImage(img, str(path))
    geo = VolumeGeometry.from_image(read_image(path))
    ijk = np.array([[0, 0, 0], [6, 5, 4], [2.5, 1.0, 3.25]])
    lps = np.array([img.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in ijk])
    ras = geo.ijk_to_ras_points(ijk)
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-4)
    np.testing.assert_allclose(geo.ras_to_ijk_points(ras), ijk, atol=1e-6)
    again = VolumeGeometry.from_ijk_to_ras(geo.ijk_to_ras, geo.shape)
    np.testing.assert_allclose(again.ijk_to_ras, geo.ijk_to_ras, atol=1e-9)
    assert geo.contains_ijk([[6, 5, 4], [6.6, 0, 0]]).tolist() == [True, False]


def test_plane_names_follow_the_direction_matrix():
    assert [numpy_axis(p) for p in ("axial", "coronal", "sagittal")] == [0, 1, 2]
    # voxel axes permuted: i runs along S, j along L, k along P
    d = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)  # columns i, j, k in LPS
    assert numpy_axis("axial", d.ravel()) == 2       # i is S -> axial slices fix i (numpy axis 2)
    assert numpy_axis("sagittal", d.ravel()) == 1    # j is L
    assert numpy_axis("coronal", d.ravel()) == 0     # k is P
    with pytest.raises(InputError):
        numpy_axis("oblique")


def test_extract_and_put_slice_roundtrip():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    for axis in range(3):
        sl = extract_slice(vol, 2, axis)
        target = np.zeros_like(vol)
        put_slice(target, sl, 2, axis)
        assert np.array_equal(np.take(target, 2, axis=axis), sl)
    with pytest.raises(InputError, match="outside"):
        extract_slice(vol, 4, 0)


def test_coronal_slice_of_a_volume_segments_the_right_voxels(predictor):
    vol = np.zeros((60, 70, 80), np.int16)
    vol[20:40, 30:50, 10:60] = 300  # a bright block; coronal slice j=40 shows rows k 20..39, cols i 10..59
    from medsamkit.io import ImageData

    image = ImageData(vol, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    res = segment_image(LocalBackend(predictor=predictor), image, box=[8, 18, 61, 41], slice_index=40, axis="coronal",
                        normalization="600,150")
    assert res.axis == 1 and res.mask.shape == vol.shape
    truth = vol[:, 40, :] > 0
    inter = (res.mask[:, 40, :] > 0) & truth
    assert 2 * inter.sum() / (res.mask[:, 40, :].sum() + truth.sum()) > 0.9
    assert res.mask.sum() == res.mask[:, 40, :].sum()  # nothing outside the prompted slice
