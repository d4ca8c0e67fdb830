"""Records on the segmentation node (slicer-core): the effect's apply step records, undo removes the entry,
the record survives .seg.nrrd and scene save/load, replays voxel-identical, and re-creates its prompts.

Real LiteMedSAM on the bundled lung CT (tumour on slices 10-12), through the same prepare -> run ->
apply calls the Segment Editor effect makes (medsamkit.mrml.interactive).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
K = 11


@pytest.fixture()
def ct(ctx):
    from types import SimpleNamespace

    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    g = volume_geometry(node)
    return SimpleNamespace(ctx=ctx, node=node, seg=seg, sid=sid, g=g, view=volume_plane_slice_to_ras(g, 0, K),
                           target=EditorLogicTarget(ctx, seg, node, sid))


def _ras(ct, xy, k=K):
    return ct.g.ijk_to_ras_points(ct.g.slice_to_ijk([xy], k, 0))[0]


def _box_then_refine(ct, model_session):
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request

    state = PromptState()
    prompt = state.set_box(ct.node, ct.view, _ras(ct, (92, 93)), _ras(ct, (123, 122)))
    res = run_request(model_session, prepare_slice_request(ct.node, ct.seg, prompt, window="lung"))
    apply_result(ct.target, res)
    state.remember(res)
    prompt = state.add_point(ct.node, ct.view, _ras(ct, (121, 120)), positive=False)
    res2 = run_request(model_session, prepare_slice_request(ct.node, ct.seg, prompt, window="lung", mask_input=state.previous))
    apply_result(ct.target, res2)
    return res, res2


def test_effect_results_are_recorded_and_undo_removes_the_entry(ct, model_session):
    from medsamkit.mrml.records import get_record

    res, res2 = _box_then_refine(ct, model_session)
    rec = get_record(ct.seg, ct.sid)
    first, second = rec["entries"]
    assert first["kind"] == "box" and second["kind"] == "refine"
    assert second["prompt"]["previous"] == first["id"] and second["prompt"]["merge"] == "progressive"
    assert first["plane"] == {"axis": 0, "name": "axial", "index": K}
    # the physical box corners are where they were drawn (RAS in the scene = LPS flipped)
    np.testing.assert_allclose(np.asarray(first["prompt"]["box"]["lps"][0]) * [-1, -1, 1], _ras(ct, (92, 93)),
                               atol=1e-6)
    assert first["model"]["kind"] == "litemedsam" and first["window"]["label"] == "lung"
    assert "snapshot" not in first["result"] and "snapshot" in second["result"]  # only the newest keeps it
    ct.target.undo()
    assert [e["id"] for e in get_record(ct.seg, ct.sid)["entries"]] == [first["id"]]
    ct.target.undo()
    assert get_record(ct.seg, ct.sid) is None
    ct.target.redo()
    ct.target.redo()
    assert [e["id"] for e in get_record(ct.seg, ct.sid)["entries"]] == [first["id"], second["id"]]


def test_record_survives_seg_nrrd_and_scene_save_load_and_replays_identical(ct, model_session, tmp_path, lite_model):
    import slicer

    from medsamkit.io import read_image
    from medsamkit.mrml.context import make_context
    from medsamkit.mrml.records import get_record, prompt_markups_from_record
    from medsamkit.mrml.segments import segment_array
    from medsamkit.records.record import seg_nrrd_records
    from medsamkit.records.replay_backend import open_replay_backend
    from medsamkit.records.replay import replay

    _box_then_refine(ct, model_session)
    rec = get_record(ct.seg, ct.sid)
    final = segment_array(ct.ctx, ct.seg, ct.sid, ct.node)

    # .seg.nrrd through Slicer's storage node, read back into a new node
    path = tmp_path / "tumour.seg.nrrd"
    st = ct.ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    st.SetFileName(str(path))
    assert st.WriteData(ct.seg) == 1
    seg2 = ct.ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert st.ReadData(seg2) == 1
    assert get_record(seg2, ct.sid) == rec
    assert seg_nrrd_records(path)[ct.sid] == rec  # and without Slicer

    # the whole scene: .mrml + its files, loaded into a fresh scene
    ct.ctx.scene.RemoveNode(seg2)
    ct.seg.SetAndObserveStorageNodeID(st.GetID())
    vst = ct.node.CreateDefaultStorageNode()
    ct.ctx.scene.AddNode(vst)
    vst.SetFileName(str(tmp_path / "ct.nrrd"))
    assert vst.WriteData(ct.node) == 1
    ct.node.SetAndObserveStorageNodeID(vst.GetID())
    ct.ctx.scene.SetRootDirectory(str(tmp_path))
    ct.ctx.scene.SetURL(str(tmp_path / "case.mrml"))
    assert ct.ctx.scene.Commit()
    other = make_context()
    try:
        other.scene.SetURL(str(tmp_path / "case.mrml"))
        assert other.scene.Connect()
        loaded = other.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        assert get_record(loaded, ct.sid) == rec
        # resume: the prompts come back as markups where they were drawn
        nodes = prompt_markups_from_record(other.scene, rec)
        points = [n for n in nodes if n.IsA("vtkMRMLMarkupsFiducialNode")][0]
        p = [0.0, 0.0, 0.0]
        points.GetNthControlPointPositionWorld(0, p)
        np.testing.assert_allclose(p, _ras(ct, (121, 120)), atol=1e-6)
        assert points.GetNthControlPointLabel(0) == "-"
        assert sum(n.IsA("vtkMRMLMarkupsROINode") for n in nodes) == 2  # the box, kept by the refinement
    finally:
        other.scene.Clear(1)

    # replay on the volume file: the same voxels as the segment
    backend, model = open_replay_backend(rec, "local", device="cpu", engine="torch")
    with backend:
        result = replay(backend, rec, read_image(DATA / "sample_lung_ct.nii.gz"), model)
    assert result.all_identical
    assert np.array_equal(result.segments[ct.sid], final)
    del slicer, lite_model


def test_propagate_in_the_effect_is_recorded_and_replays_identical(ct, model_session):
    from medsamkit.io import read_image
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_volume_request, run_request
    from medsamkit.mrml.records import get_record
    from medsamkit.mrml.segments import segment_array
    from medsamkit.records.replay_backend import open_replay_backend
    from medsamkit.records.replay import replay

    prompt = PromptState().set_box(ct.node, ct.view, _ras(ct, (92, 93)), _ras(ct, (123, 122)))
    res = run_request(model_session, prepare_volume_request(ct.node, ct.seg, "propagate", window="lung", prompt=prompt))
    apply_result(ct.target, res)
    (e,) = get_record(ct.seg, ct.sid)["entries"]
    assert e["kind"] == "propagate" and e["write"]["region"] == "slab" and len(e["result"]["slices"]) >= 2
    backend, model = open_replay_backend(get_record(ct.seg, ct.sid), "local", device="cpu", engine="torch")
    with backend:
        result = replay(backend, get_record(ct.seg, ct.sid), read_image(DATA / "sample_lung_ct.nii.gz"), model)
    assert result.all_identical
    assert np.array_equal(result.segments[ct.sid], segment_array(ct.ctx, ct.seg, ct.sid, ct.node))


def test_corrupt_or_foreign_tag_is_refused_and_not_lost(ct, model_session):
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.records import get_record
    from medsamkit.records.record import TAG, RecordError

    segment = ct.seg.GetSegmentation().GetSegment(ct.sid)
    segment.SetTag(TAG, '{"schema"%3A"other-tool"}')
    with pytest.raises(RecordError, match="not a medsamkit prompt record"):
        get_record(ct.seg, ct.sid)
    prompt = PromptState().set_box(ct.node, ct.view, _ras(ct, (92, 93)), _ras(ct, (123, 122)))
    apply_result(ct.target, run_request(model_session, prepare_slice_request(ct.node, ct.seg, prompt, window="lung")))
    assert len(get_record(ct.seg, ct.sid)["entries"]) == 1  # a new record; the foreign text is kept aside
    import vtk

    kept = vtk.reference("")
    assert segment.GetTag(TAG + ".damaged", kept) and "other-tool" in str(kept)
