"""Editor semantics of medsamkit.mrml.segments.write_mask on slicer-core's vtkSlicerSegmentEditorLogic.

Every expectation is computed independently with numpy and compared voxel for voxel with the segment
exported from the real segmentation node.
"""
from __future__ import annotations

import numpy as np
import pytest

from mrml_phantoms import ijk_to_ras, rotation

from medsamkit.errors import InputError
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

SHAPE = (8, 20, 16)  # K, J, I


@pytest.fixture()
def scene(ctx):
    """An oblique anisotropic volume, a segmentation with 'tumor' (selected) and 'liver', an editor target."""
    from types import SimpleNamespace

    import slicer

    from medsamkit.mrml.segments import EditorLogicTarget, ijk_to_segmentation, new_segmentation
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import slice_in_view, volume_geometry, \
        volume_plane_slice_to_ras

    vol_arr = (np.arange(np.prod(SHAPE)) % 200).astype(np.int16).reshape(SHAPE)
    vol = add_volume_from_array(ctx.scene, vol_arr, ijk_to_ras(rotation(25, 10), (0.8, 1.2, 3.0), (4, 5, -6)), "v")
    seg, tumor = new_segmentation(ctx, vol, segment_name="tumor")
    liver = seg.GetSegmentation().AddEmptySegment("liver", "liver", [0.2, 0.8, 0.2])
    assert liver == "liver"
    target = EditorLogicTarget(ctx, seg, vol, tumor)
    g = volume_geometry(vol)
    view = slice_in_view(g, volume_plane_slice_to_ras(g, 0, 4))
    return SimpleNamespace(ctx=ctx, vol=vol, vol_arr=vol_arr, seg=seg, tumor=tumor, liver=liver, target=target,
                           view=view, ijk=ijk_to_segmentation(vol, seg), N=slicer.vtkMRMLSegmentEditorNode,
                           S=slicer.vtkMRMLSegmentationNode)


def _get(s, sid):
    from medsamkit.mrml.segments import segment_array

    return segment_array(s.ctx, s.seg, sid, s.vol).astype(bool)


def _set(s, sid, mask):
    from medsamkit.mrml.segments import set_segment_from_array

    set_segment_from_array(s.seg, sid, mask.astype(np.uint8), s.vol)


def _blob(k0, k1, j0, j1, i0, i1):
    m = np.zeros(SHAPE, bool)
    m[k0:k1, j0:j1, i0:i1] = True
    return m


def _slice_mask(j0, j1, i0, i1):
    m = np.zeros(SHAPE[1:], np.uint8)
    m[j0:j1, i0:i1] = 1
    return m


def _write(s, mask2d, mode="replace"):
    from medsamkit.mrml.segments import place_slice_mask, write_mask

    return write_mask(s.target, place_slice_mask(mask2d, s.view, s.ijk), mode)


def test_modes_and_undo_restore_exactly(scene):
    s = scene
    s.target.editor_node.SetOverwriteMode(s.N.OverwriteNone)
    before = _blob(2, 7, 3, 12, 2, 10)  # spans slices 2..6, including the prompted slice 4
    _set(s, s.tumor, before)
    m = _slice_mask(8, 16, 6, 14)
    _write(s, m, "replace")
    replaced = before.copy()
    replaced[4] = m.astype(bool)
    assert np.array_equal(_get(s, s.tumor), replaced)  # slice 4 is the mask; slices 2,3,5,6 kept
    _write(s, _slice_mask(0, 3, 0, 3), "add")
    added = replaced.copy()
    added[4, 0:3, 0:3] = True
    assert np.array_equal(_get(s, s.tumor), added)
    _write(s, _slice_mask(8, 12, 6, 14), "remove")
    removed = added.copy()
    removed[4, 8:12, 6:14] = False
    assert np.array_equal(_get(s, s.tumor), removed)
    for expected in (added, replaced, before):  # each write is exactly one undo step
        s.target.undo()
        assert np.array_equal(_get(s, s.tumor), expected)
    s.target.redo()
    assert np.array_equal(_get(s, s.tumor), replaced)


def test_overwrite_modes(scene):
    s = scene
    liver = _blob(0, 8, 0, 10, 0, 16)
    m = _slice_mask(5, 15, 4, 12)
    s.target.editor_node.SetOverwriteMode(s.N.OverwriteNone)
    _set(s, s.liver, liver)
    _write(s, m)
    assert np.array_equal(_get(s, s.liver), liver)  # overlap allowed
    s.target.editor_node.SetOverwriteMode(s.N.OverwriteAllSegments)
    _write(s, m)
    carved = liver.copy()
    carved[4] &= ~m.astype(bool)
    assert np.array_equal(_get(s, s.liver), carved)
    assert _get(s, s.tumor)[4].sum() == m.sum()


def test_editable_area_is_honoured(scene):
    s = scene
    s.target.editor_node.SetOverwriteMode(s.N.OverwriteNone)
    liver = _blob(0, 8, 0, 10, 0, 16)
    _set(s, s.liver, liver)
    m = _slice_mask(5, 15, 4, 12)
    s.target.editor_node.SetMaskMode(s.S.EditAllowedOutsideAllSegments)
    _write(s, m)
    expected = np.zeros(SHAPE, bool)
    expected[4] = m.astype(bool) & ~liver[4]
    assert np.array_equal(_get(s, s.tumor), expected)
    # Tumor voxels inside liver (not editable now) survive a 'replace' of their slice.
    protected = expected.copy()
    protected[4, 2:5, 2:5] = True
    _set(s, s.tumor, protected)
    m2 = _slice_mask(12, 18, 1, 5)
    _write(s, m2)
    assert np.array_equal(_get(s, s.tumor)[4], (m2.astype(bool) & ~liver[4]) | protected[4] & liver[4])
    # Inside one segment only: 'add' stays inside liver; 'replace' = mask inside liver, kept outside it.
    s.target.editor_node.SetMaskMode(s.S.EditAllowedInsideSingleSegment)
    s.target.editor_node.SetMaskSegmentID(s.liver)
    before = _get(s, s.tumor)
    _write(s, _slice_mask(0, 20, 0, 16), "add")
    added = _get(s, s.tumor)
    assert np.array_equal(added[4], liver[4] | before[4])
    m3 = _slice_mask(8, 14, 2, 6).astype(bool)
    _write(s, m3)
    after = _get(s, s.tumor)
    assert np.array_equal(after[4], (liver[4] & m3) | (added[4] & ~liver[4]))
    assert np.array_equal(np.delete(after, 4, axis=0), np.delete(before, 4, axis=0))  # other slices kept


def test_intensity_mask_is_honoured(scene):
    s = scene
    s.target.editor_node.SetSourceVolumeIntensityMask(True)
    s.target.editor_node.SetSourceVolumeIntensityMaskRange(50, 120)
    m = _slice_mask(0, 20, 0, 16)
    _write(s, m)
    in_range = (s.vol_arr[4] >= 50) & (s.vol_arr[4] <= 120)
    assert np.array_equal(_get(s, s.tumor)[4], in_range) and 0 < in_range.sum() < in_range.size


def test_wrong_shape_or_mode_changes_nothing(scene):
    from medsamkit.mrml.segments import place_slice_mask, write_mask

    s = scene
    _set(s, s.tumor, _blob(2, 6, 2, 6, 2, 6))
    _write(s, _slice_mask(10, 12, 10, 12), "add")  # one real undo step to compare against
    state = _get(s, s.tumor)
    with pytest.raises(InputError, match="volume changed"):
        place_slice_mask(np.ones((19, 16), np.uint8), s.view, s.ijk)
    with pytest.raises(InputError, match="Unknown write mode"):
        write_mask(s.target, place_slice_mask(_slice_mask(0, 1, 0, 1), s.view, s.ijk), "overwrite")
    with pytest.raises(InputError, match="binary"):
        place_slice_mask(np.full(SHAPE[1:], 3, np.uint8), s.view, s.ijk)
    assert np.array_equal(_get(s, s.tumor), state)
    s.target.undo()  # the failed calls saved no undo state: one undo goes back past the 'add'
    assert np.array_equal(_get(s, s.tumor), _blob(2, 6, 2, 6, 2, 6))


def test_failed_inference_leaves_segment_untouched(scene, model_session):
    """The real engine rejects a prompt (box without area; and a cancelled run): nothing is written."""
    from dataclasses import replace

    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.volumes import volume_geometry, volume_plane_slice_to_ras
    from medsamkit.progress import Cancelled

    s = scene
    _set(s, s.tumor, _blob(1, 7, 2, 9, 3, 11))
    _write(s, _slice_mask(10, 12, 10, 12), "add")
    state = _get(s, s.tumor)
    g = volume_geometry(s.vol)
    view = volume_plane_slice_to_ras(g, 0, 4)
    corner = g.ijk_to_ras_points([[5.0, 5.0, 4.0]])[0]
    prompt = PromptState().set_box(s.vol, view, corner, corner)  # a click, not a drag: no area
    request = prepare_slice_request(s.vol, s.seg, prompt, window="soft-tissue")
    calls = model_session.backend.predictor.model.encoder_calls
    with pytest.raises(InputError, match="no area"):
        apply_result(s.target, run_request(model_session, request))  # as the effect: apply only what run returned
    assert model_session.backend.predictor.model.encoder_calls == calls  # rejected before the (costly) image encoding
    assert np.array_equal(_get(s, s.tumor), state)
    with pytest.raises(Cancelled):
        boxed = replace(request, prompt=replace(request.prompt, box=np.array([1.0, 1.0, 9.0, 9.0])))
        run_request(model_session, boxed, cancel=lambda: True)
    assert np.array_equal(_get(s, s.tumor), state)
    s.target.undo()  # no undo state was added by the failures
    assert np.array_equal(_get(s, s.tumor), _blob(1, 7, 2, 9, 3, 11))


def test_segmentation_on_another_lattice_is_resampled(scene, slicer_core):
    """A segmentation oversampled 2x (its own geometry): the mask lands on the same physical voxels."""
    from medsamkit.mrml.volumes import numpy_to_matrix

    s = scene
    C = slicer_core.vtkSegmentationConverter
    fine = s.ijk @ np.diag([0.5, 0.5, 0.5, 1.0])
    fine[:3, 3] = (s.ijk @ np.array([-0.25, -0.25, -0.25, 1.0]))[:3]
    extent = [0, 2 * SHAPE[2] - 1, 0, 2 * SHAPE[1] - 1, 0, 2 * SHAPE[0] - 1]
    s.seg.GetSegmentation().SetConversionParameter(C.GetReferenceImageGeometryParameterName(),
                                                   C.SerializeImageGeometry(numpy_to_matrix(fine), extent))
    assert s.target.default_modifier_labelmap().GetExtent() == tuple(extent)
    m = _slice_mask(5, 15, 4, 12)
    _write(s, m)
    expected = np.zeros(SHAPE, bool)
    expected[4] = m.astype(bool)
    assert np.array_equal(_get(s, s.tumor), expected)
