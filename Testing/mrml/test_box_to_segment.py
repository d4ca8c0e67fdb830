"""Box drawn in RAS on a slice view -> engine (real LiteMedSAM, CPU) -> segment, through the MRML layer.

Geometry: on an oblique (30 deg about S, then 15 deg about R), anisotropic volume, a box whose corners are
the RAS positions of the ground-truth bounding box's corner voxels must become exactly that pixel box,
in all three slice orientations; the segment the layer writes must equal the engine's mask voxel for
voxel (on that slice, nothing elsewhere). Real data: the dev CT (lung tumour) and brain1 (MR lesion,
stored with a flipped axis) through Slicer's own loader and a real slice node.
"""
from __future__ import annotations

import numpy as np
import pytest

from mrml_phantoms import ellipsoid_phantom, ijk_to_ras, rotation

from medsamkit.volume import extract_slice
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _corner_ras(node, xy, index, axis):
    """RAS of slice pixel ``xy`` via the node's own vtk matrix (independent of VolumeGeometry)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from medsamkit.geometry import SLICE_INDEX_IJK, SLICE_XY_IJK

    ijk = [0.0, 0.0, 0.0]
    ijk[SLICE_XY_IJK[axis][0]], ijk[SLICE_XY_IJK[axis][1]] = xy
    ijk[SLICE_INDEX_IJK[axis]] = index
    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((*ijk, 1.0))[:3])


def _view(ctx, node, orientation, centre_ras, rotate):
    from medsamkit.mrml.volumes import matrix_to_numpy

    sn = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    sn.SetLayoutName(f"v{ctx.scene.GetNumberOfNodesByClass('vtkMRMLSliceNode')}")
    sn.SetOrientation(orientation)
    if rotate:
        sn.RotateToVolumePlane(node)
    sn.JumpSliceByCentering(*centre_ras)
    return matrix_to_numpy(sn.GetSliceToRAS())


def _run_box(ctx, model_session, node, slice_to_ras, box_xyxy, index, axis, window):
    """Drag a box (slice pixels -> RAS corners) in a view, run, write; return (prompt, result, segment)."""
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation, segment_array

    a = _corner_ras(node, box_xyxy[:2], index, axis)
    b = _corner_ras(node, box_xyxy[2:], index, axis)
    state = PromptState()
    prompt = state.set_box(node, slice_to_ras, b, a)  # dragged bottom-right to top-left
    seg, sid = new_segmentation(ctx, node)
    request = prepare_slice_request(node, seg, prompt, window=window)
    result = run_request(model_session, request)
    apply_result(EditorLogicTarget(ctx, seg, node, sid), result, "replace")
    return prompt, result, segment_array(ctx, seg, sid, node)


def test_oblique_anisotropic_box_lands_on_ground_truth_voxels(ctx, model_session):
    from mrml_fixtures import add_volume_from_array

    vol, label = ellipsoid_phantom()
    node = add_volume_from_array(ctx.scene, vol, ijk_to_ras(rotation(30, 15), (0.9, 0.7, 2.0), (3, -8, 12)), "obl")
    centre_ijk = (38.0, 50.0, 20.0)  # i, j, k of the ellipsoid centre
    m = ijk_to_ras(rotation(30, 15), (0.9, 0.7, 2.0), (3, -8, 12))
    centre_ras = (m @ np.append(centre_ijk, 1.0))[:3]
    dices = {}
    for orientation, axis in (("Axial", 0), ("Coronal", 1), ("Sagittal", 2)):
        index = int(centre_ijk[2 - axis])
        gt = extract_slice(label, index, axis).astype(bool)
        ys, xs = np.nonzero(gt)
        gt_box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)
        view = _view(ctx, node, orientation, centre_ras, rotate=True)
        prompt, result, segment = _run_box(ctx, model_session, node, view, gt_box, index, axis, "soft-tissue")
        assert (prompt.view.axis, prompt.view.index) == (axis, index)
        np.testing.assert_allclose(prompt.box, gt_box, atol=1e-6)  # the box is the GT box, to the voxel
        expected = np.zeros(label.shape, np.uint8)
        sl = [slice(None)] * 3
        sl[axis] = index
        expected[tuple(sl)] = result.prediction.mask
        assert np.array_equal(segment, expected)  # voxel for voxel: written segment == engine mask
        dices[orientation] = _dice(result.prediction.mask, gt)
    # Measured 0.995-0.998 on this phantom: the image the model saw is the one the box was drawn on.
    assert min(dices.values()) > 0.9, dices


def test_dev_ct_box_through_slicer_loader_and_axial_view(ctx, model_session):
    from pathlib import Path

    from medsamkit.io import read_image
    from medsamkit.mrml.volumes import array_from_volume, load_volume
    from medsamkit.backend.local import LocalBackend
    from medsamkit.segment import segment_image

    data = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
    node = load_volume(ctx, data / "sample_lung_ct.nii.gz")
    label = read_image(data / "sample_lung_ct.label.nii.gz").array > 0
    k = 11
    ys, xs = np.nonzero(label[k])
    box = np.array([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], dtype=float)
    centre = _corner_ras(node, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), k, 0)
    view = _view(ctx, node, "Axial", centre, rotate=False)  # the standard axial view
    prompt, result, segment = _run_box(ctx, model_session, node, view, box, k, 0, "lung")
    np.testing.assert_allclose(prompt.box, box, atol=1e-4)  # NIfTI geometry is float32
    assert np.array_equal(segment[k], result.prediction.mask.astype(np.uint8))
    assert segment.sum() == segment[k].sum()
    # The engine alone (the CLI path: SimpleITK reader, segment_image) gives the very same mask.
    alone = segment_image(LocalBackend(predictor=model_session.backend.predictor), read_image(data / "sample_lung_ct.nii.gz"), box=box, slice_index=k,
                          axis="axial", normalization="lung")
    assert np.array_equal(alone.slice_mask, result.prediction.mask)
    d = _dice(segment[k], label[k])
    assert d > 0.75, d  # measured 0.814 (as `medsamkit demo`, same slice and box)
    assert array_from_volume(node).shape == label.shape


def test_brain_mr_left_handed_storage(ctx, model_session, test_data):
    """brain1 is stored left-handed (LPS direction diag(1, -1, 1)); Slicer's reader flips k to make it
    right-handed, so Slicer's slice 8 is SimpleITK's slice 16. A box drawn through the RAS corners of
    the ground truth (read by SimpleITK, mapped by the engine's geometry) must still land on its voxels."""
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.mrml.volumes import array_from_volume, load_volume

    node = load_volume(ctx, test_data / "brain1.img.nii.gz")
    ref = read_image(test_data / "brain1.seg.nii.gz")
    label, ref_geometry = ref.array > 0, VolumeGeometry.from_image(ref)
    k = int(np.argmax(label.sum(axis=(1, 2))))  # 16 in SimpleITK's order
    ys, xs = np.nonzero(label[k])
    box = np.array([xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2], dtype=float)
    a, b = ref_geometry.ijk_to_ras_points(ref_geometry.slice_to_ijk([box[:2], box[2:]], k, 0))
    view = _view(ctx, node, "Axial", (a + b) / 2, rotate=False)
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation, segment_array

    prompt = PromptState().set_box(node, view, a, b)
    assert (prompt.view.axis, prompt.view.index) == (0, label.shape[0] - 1 - k)  # k flipped by Slicer's reader
    np.testing.assert_allclose(prompt.box, box, atol=1e-4)  # i and j are not flipped
    assert np.array_equal(array_from_volume(node)[prompt.view.index], read_image(test_data / "brain1.img.nii.gz").array[k])
    seg, sid = new_segmentation(ctx, node)
    result = run_request(model_session, prepare_slice_request(node, seg, prompt, window="percentile"))
    apply_result(EditorLogicTarget(ctx, seg, node, sid), result, "replace")
    segment = segment_array(ctx, seg, sid, node)[::-1]  # back to SimpleITK's order
    assert np.array_equal(segment[k], result.prediction.mask.astype(np.uint8)) and segment.sum() == segment[k].sum()
    d = _dice(segment[k], label[k])
    assert d > 0.8, d  # measured 0.87 (the engine alone on SimpleITK's slice 16 with this box: 0.870)
