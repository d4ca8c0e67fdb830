"""medsamkit.mrml.volumes on a real slicer-core scene: geometry agreement and the slice a view shows.

Slice views are real ``vtkMRMLSliceNode``s driven by Slicer's own code (orientation presets,
``RotateToVolumePlane``, ``JumpSliceByCentering``), so the test checks our reading of what Slicer does.
"""
from __future__ import annotations

import numpy as np
import pytest

from mrml_phantoms import ijk_to_ras, rotation

from medsamkit.errors import InputError
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)


def _write_oblique(tmp_path, name="oblique.nrrd", shape=(12, 30, 26), z_deg=30.0, x_deg=15.0):
    import SimpleITK as sitk

    voxels = (np.arange(np.prod(shape)) % 251).astype(np.int16).reshape(shape)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.7, 1.3, 3.0))
    image.SetOrigin((12.5, -40.0, 7.0))  # LPS
    image.SetDirection(rotation(z_deg, x_deg).flatten().tolist())
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path, voxels


def _slice_node(ctx, orientation, volume=None, rotate=False, centre_ras=None):
    node = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetLayoutName(f"test{ctx.scene.GetNumberOfNodesByClass('vtkMRMLSliceNode')}")
    assert node.SetOrientation(orientation)
    if rotate:
        node.RotateToVolumePlane(volume)
    if centre_ras is not None:
        node.JumpSliceByCentering(*centre_ras)
    from medsamkit.mrml.volumes import matrix_to_numpy

    return matrix_to_numpy(node.GetSliceToRAS())


def test_node_geometry_agrees_with_engine_geometry(ctx, tmp_path):
    """VolumeGeometry from the node's IJK->RAS equals the engine's, read from the same file by SimpleITK."""
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.mrml.volumes import array_from_volume, ijk_to_node, load_volume, volume_geometry

    path, voxels = _write_oblique(tmp_path)
    node = load_volume(ctx, path)
    from_node = volume_geometry(node)
    from_file = VolumeGeometry.from_image(read_image(path))
    assert from_node.shape == from_file.shape == voxels.shape
    np.testing.assert_allclose(from_node.spacing, from_file.spacing, atol=1e-9)
    np.testing.assert_allclose(from_node.origin, from_file.origin, atol=1e-9)
    np.testing.assert_allclose(from_node.direction, from_file.direction, atol=1e-9)
    np.testing.assert_allclose(from_node.ijk_to_ras, ijk_to_node(node), atol=1e-9)
    ijk = np.array([[0, 0, 0], [25, 29, 11], [3.5, 7.25, 2.0]])
    np.testing.assert_allclose(from_node.ras_to_ijk_points(from_file.ijk_to_ras_points(ijk)), ijk, atol=1e-9)
    assert np.array_equal(array_from_volume(node), voxels)


def test_parent_linear_transform_is_in_world_geometry(ctx, slicer_core):
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import ijk_to_world, numpy_to_matrix, volume_geometry

    m = ijk_to_ras(rotation(10, 0), (1.0, 1.0, 2.0), (5, 6, 7))
    node = add_volume_from_array(ctx.scene, np.zeros((4, 5, 6), np.int16), m, "v")
    t = np.eye(4)
    t[:3, :3] = rotation(0, 20)
    t[:3, 3] = (1.0, -2.0, 3.0)
    transform = ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(numpy_to_matrix(t))
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(ijk_to_world(node), t @ m, atol=1e-12)
    np.testing.assert_allclose(volume_geometry(node).ijk_to_ras, t @ m, atol=1e-12)


def test_nonlinear_parent_transform_is_refused(ctx, slicer_core):
    from vtkmodules.vtkFiltersHybrid import vtkGridTransform  # noqa: F401  (a warping transform)

    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import volume_geometry

    node = add_volume_from_array(ctx.scene, np.zeros((4, 5, 6), np.int16), np.eye(4), "warped")
    grid = ctx.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="non-linear transform.*Harden"):
        volume_geometry(node)


@pytest.mark.parametrize("z_deg,x_deg", [(30.0, 0.0), (30.0, 15.0), (0.0, 0.0)])
def test_view_rotated_to_volume_plane_shows_a_voxel_slice(ctx, tmp_path, z_deg, x_deg):
    """For every orientation preset, Slicer's RotateToVolumePlane gives a voxel plane we read correctly."""
    from medsamkit.mrml.volumes import load_volume, slice_in_view, volume_geometry

    path, _ = _write_oblique(tmp_path, z_deg=z_deg, x_deg=x_deg)
    node = load_volume(ctx, path)
    g = volume_geometry(node)
    target_ijk = np.array([9.0, 17.0, 5.0])  # i, j, k
    centre = g.ijk_to_ras_points(target_ijk)[0]
    seen_axes = set()
    for orientation in ("Axial", "Coronal", "Sagittal"):
        view = slice_in_view(g, _slice_node(ctx, orientation, node, rotate=True, centre_ras=centre))
        seen_axes.add(view.axis)
        assert view.index == int(target_ijk[view.ijk_component])
        assert abs(view.position - view.index) < 1e-6
    assert seen_axes == {0, 1, 2}


def test_standard_views_of_an_oblique_volume(ctx, tmp_path):
    """Volume turned 30 deg about S: the axial view is a (rotated) voxel plane; coronal/sagittal are oblique."""
    from medsamkit.mrml.volumes import load_volume, slice_in_view, volume_geometry

    path, _ = _write_oblique(tmp_path, z_deg=30.0, x_deg=0.0)
    node = load_volume(ctx, path)
    g = volume_geometry(node)
    centre = g.ijk_to_ras_points([[9.0, 17.0, 5.0]])[0]
    assert slice_in_view(g, _slice_node(ctx, "Axial", centre_ras=centre)).axis == 0
    for orientation in ("Coronal", "Sagittal"):
        with pytest.raises(InputError, match=r"oblique.*30\.0 degrees.*Rotate to volume plane"):
            slice_in_view(g, _slice_node(ctx, orientation, centre_ras=centre))


def test_standard_views_of_a_flipped_volume_map_to_numpy_axes(ctx, slicer_core):
    """brain1-like storage (LPS direction diag(1, -1, 1)): axial/coronal/sagittal = numpy axis 0/1/2."""
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import slice_in_view, volume_geometry

    lps = np.diag([1.0, -1.0, 1.0])
    m = ijk_to_ras(np.diag([-1.0, -1.0, 1.0]) @ lps, (0.8, 0.8, 6.5), (10.0, -20.0, -30.0))
    node = add_volume_from_array(ctx.scene, np.zeros((9, 20, 16), np.int16), m, "flipped")
    g = volume_geometry(node)
    centre = g.ijk_to_ras_points([[4.0, 11.0, 6.0]])[0]
    views = {o: slice_in_view(g, _slice_node(ctx, o, centre_ras=centre)) for o in ("Axial", "Coronal", "Sagittal")}
    assert [(v.axis, v.index) for v in views.values()] == [(0, 6), (1, 11), (2, 4)]


def test_plane_outside_the_volume_is_refused(ctx, slicer_core):
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import slice_in_view, volume_geometry, \
        volume_plane_slice_to_ras

    node = add_volume_from_array(ctx.scene, np.zeros((5, 6, 7), np.int16), np.eye(4), "small")
    g = volume_geometry(node)
    assert slice_in_view(g, volume_plane_slice_to_ras(g, 0, 4.4)).index == 4
    with pytest.raises(InputError, match="outside the volume"):
        slice_in_view(g, volume_plane_slice_to_ras(g, 0, 5.6))


def test_display_window_becomes_the_engine_mapping(ctx, slicer_core):
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import display_window_normalization

    node = add_volume_from_array(ctx.scene, np.zeros((3, 4, 5), np.int16), np.eye(4), "ct")
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(1500.0, -160.0)
    norm = display_window_normalization(node)
    assert (norm.mode, norm.low, norm.high) == ("range", -910.0, 590.0)
