"""The MedSAM effect as Slicer runs it: loaded through slicer_app's reproduction of Slicer's loaders
(module file -> startupCompleted -> registerEditorEffect -> the editor's clone -> options frame ->
activate), on strict Qt/CTK stand-ins, over a real slicer-core scene, segment editor node and logic,
with the real LiteMedSAM engine, for Slicer 5.10 (slicer_fixtures.harness).

Mouse and key events go through the effect's own processInteractionEvents with a real
vtkRenderWindowInteractor (event position, modifiers, key symbol); the view is a stand-in whose display
XY are the slice's pixel coordinates.
"""
from __future__ import annotations

import ast
import json
import py_compile
import time
import types

import numpy as np
import pytest

from slicer_fixtures import DATA, REPO, SEGMENT_MODULE, ctx, model_session, harness, slicer_core, use_model_session  # noqa: F401

MODULE_DIR = REPO / "MedSAMSegment"
TEMPLATE_ORDER = ["__init__", "clone", "icon", "helpText", "setupOptionsFrame", "setMRMLDefaults",
                  "updateGUIFromMRML", "updateMRMLFromGUI", "processInteractionEvents"]


def test_gui_files_compile(tmp_path):
    files = sorted(MODULE_DIR.rglob("*.py")) + sorted((REPO / "MedSAMTraining").rglob("*.py"))
    assert len(files) >= 10
    for n, path in enumerate(files):
        py_compile.compile(str(path), cfile=str(tmp_path / f"{n}.pyc"), doraise=True)


def test_effect_keeps_slicer_template_method_order():
    """Slicer's template methods, in the template's order, in the effect class and its options panel base
    (the panel's setupOptionsFrame ... updateMRMLFromGUI, the effect's __init__ ... processInteractionEvents)."""
    found = []
    for file, name in (("OptionsPanel.py", "EffectOptions"), ("SegmentEditorEffect.py", "SegmentEditorEffect")):
        tree = ast.parse((MODULE_DIR / "MedSAMSegmentLib" / file).read_text(encoding="utf-8"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
        methods = [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]
        positions = [methods.index(m) for m in TEMPLATE_ORDER if m in methods]
        assert positions == sorted(positions), (file, methods)
        found += [m for m in TEMPLATE_ORDER if m in methods]
    assert sorted(found) == sorted(TEMPLATE_ORDER), found


@pytest.fixture()
def effect_on_ct(harness, model_session, monkeypatch):
    import vtk

    from medsamkit.io import read_image
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry

    harness.start(SEGMENT_MODULE)
    use_model_session(monkeypatch, model_session)
    ctx = harness.ctx
    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    other = seg.GetSegmentation().AddEmptySegment("other", "other", [0.1, 0.2, 0.9])
    editor = harness.editor(node, seg, sid)
    editor.setActiveEffectByName("MedSAM")
    scripted = editor.activeEffect()
    assert scripted is not None and scripted.name == "MedSAM"
    scripted.setParameter("Window", "lung")
    s = types.SimpleNamespace(h=harness, editor=editor, scripted=scripted, effect=scripted.self(), ctx=ctx,
                              node=node, seg=seg, sid=sid, other=other, g=volume_geometry(node), vtk=vtk,
                              label=read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0)
    yield s
    editor._destroy()


def _segment(s, sid=None):
    from medsamkit.mrml.segments import segment_array

    return segment_array(s.ctx, s.seg, sid or s.sid, s.node).astype(bool)


def _view(s, k):
    import slicer_app

    return slicer_app.SliceWidget(s.h, s.g, k)


def _event(s, view, event, xy, ctrl=False, key="", shift=False, alt=False):
    interactor = s.vtk.vtkGenericRenderWindowInteractor()
    interactor.SetEventInformation(int(round(xy[0])), int(round(xy[1])), int(ctrl), int(shift), "\0", 0, key or None)
    interactor.SetAltKey(int(alt))
    return s.effect.processInteractionEvents(interactor, getattr(s.vtk.vtkCommand, event), view)


def _drag_box(s, view, x0, y0, x1, y1):
    assert _event(s, view, "LeftButtonPressEvent", (x0, y0))
    assert _event(s, view, "MouseMoveEvent", ((x0 + x1) // 2, (y0 + y1) // 2))
    assert _event(s, view, "LeftButtonReleaseEvent", (x1, y1))


def _tumour_box(s, k):
    ys, xs = np.nonzero(s.label[k])
    return xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3


def _wait_worker(s, job, timeout=600):
    deadline = time.monotonic() + timeout
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.done()


def test_box_drag_then_negative_click_through_the_effect(effect_on_ct):
    s = effect_on_ct
    k = 11
    view = _view(s, k)
    _drag_box(s, view, *_tumour_box(s, k))
    assert s.effect.job is not None  # running on the worker; the UI thread returned at once
    assert s.h.qt.QApplication.overrideCursor() is not None
    assert s.effect.waitForResult(600)
    assert s.h.qt.QApplication.overrideCursor() is None  # busy cursor restored
    first = _segment(s)
    assert first[k].sum() > 0 and first.sum() == first[k].sum()
    d = 2 * (first[k] & s.label[k]).sum() / (first[k].sum() + s.label[k].sum())
    assert d > 0.75, d  # measured 0.814, as the engine alone with this box
    assert "slice 11" in s.effect.statusLabel.text and s.h.undo_saves == 1
    # Refine mode (set as a script would; the radio button also clears the prompts): Ctrl+Shift+click
    # (negative) on a pixel the model wrongly included.
    s.scripted.setParameter("PromptMode", "refine")
    assert s.effect.modeButtons["refine"].checked  # the GUI followed the parameter (updateGUIFromMRML)
    wy, wx = np.argwhere(first[k] & ~s.label[k])[0]
    box_prompt = s.effect.promptState.box.copy()
    assert _event(s, view, "LeftButtonPressEvent", (float(wx), float(wy)), ctrl=True, shift=True)
    assert s.effect.waitForResult(600)
    second = _segment(s)
    assert not second[k, wy, wx] and s.h.undo_saves == 2
    assert s.effect.promptState.labels == [0] and np.array_equal(s.effect.promptState.box, box_prompt)
    s.editor.undo()  # one result, one undo step
    assert np.array_equal(_segment(s), first)


def test_result_is_dropped_when_the_selection_changed(effect_on_ct):
    s = effect_on_ct
    _drag_box(s, _view(s, 11), 90, 90, 126, 125)
    s.scripted.parameterSetNode().SetSelectedSegmentID(s.other)  # the user picked another segment meanwhile
    assert s.effect.waitForResult(600)
    assert "selection changed" in s.effect.statusLabel.text
    assert _segment(s).sum() == 0 and _segment(s, s.other).sum() == 0 and s.h.undo_saves == 0


@pytest.mark.parametrize("closing", ["volume removed", "scene closed"])
def test_nothing_is_written_when_the_volume_or_scene_is_closed_during_a_job(effect_on_ct, closing):
    s = effect_on_ct
    _drag_box(s, _view(s, 11), 90, 90, 126, 125)
    assert s.effect.job is not None
    if closing == "volume removed":
        s.ctx.scene.RemoveNode(s.node)
    else:
        s.ctx.scene.Clear(0)
    assert s.effect.waitForResult(600)
    assert "closed while segmenting slice 11; nothing was written" in s.effect.statusLabel.text
    assert "Unexpected error" not in s.effect.statusLabel.text and s.h.undo_saves == 0
    if closing == "volume removed":  # the segmentation is still there, untouched
        assert s.seg.GetScene() is s.ctx.scene and s.seg.GetSegmentation().GetNumberOfSegments() == 2
        labelmap = s.seg.GetBinaryLabelmapInternalRepresentation(s.sid)
        assert labelmap is None or labelmap.GetPointData().GetScalars() is None or \
            not np.asarray(labelmap.GetPointData().GetScalars()).any()


def test_oblique_view_is_reported_not_raised(effect_on_ct):
    import slicer_app

    s = effect_on_ct
    tilted = np.eye(4)
    tilted[:3, :3] = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    view = slicer_app.SliceWidget(s.h, s.g, 11, matrix=tilted)
    _drag_box(s, view, 90, 90, 126, 125)
    assert s.effect.job is None and "oblique" in s.effect.statusLabel.text


def test_marker_clicks_and_run_through_the_panel(effect_on_ct):
    """Markers mode: two clicks per line on slices 10 and 12, Show boxes, Enter runs -> slices 10-12 written."""
    s = effect_on_ct
    from medsamkit.simulated_reader import axis_lines_2d

    s.effect.markerPanel.placeButton.click()
    assert s.scripted.parameter("PromptMode") == "markers"
    for k in (10, 12):
        view = _view(s, k)
        for line in axis_lines_2d(s.label[k], s.g.slice_spacing_xy(0)):
            for xy in line:
                assert _event(s, view, "LeftButtonPressEvent", tuple(xy))
    assert len(s.effect.markerPanel.lines()) == 4
    s.effect.markerPanel.showButton.click()
    assert "3 boxes on slices 10-12" in s.effect.statusLabel.text
    assert _event(s, view, "KeyPressEvent", (0, 0), key="Return")  # Enter runs the markers
    assert s.effect.job is not None and s.effect.waitForResult(600)
    written = _segment(s)
    assert sorted(set(np.nonzero(written)[0])) == [10, 11, 12]
    d = 2 * (written & s.label).sum() / (written.sum() + s.label.sum())
    assert d > 0.75, d  # measured 0.820, as the in-scene marker run and the batch
    from medsamkit.mrml.records import get_record

    (entry,) = get_record(s.seg, s.sid)["entries"]
    assert entry["kind"] == "markers" and len(entry["prompt"]["markers"]) == 4  # the lines are in the record
    s.effect.markerPanel.clearButton.click()
    assert s.effect.markerPanel.lines() == []
    s.effect.promptsButton.click()  # resume: the recorded lines come back as marker lines the panel runs
    assert len(s.effect.markerPanel.lines()) == 4


# ------------------------------------------------------------------------------------------------------ cancel
def _start_box_job(s, k=11):
    _drag_box(s, _view(s, k), *_tumour_box(s, k))
    job = s.effect.job
    deadline = time.monotonic() + 60
    while not (job.future.running() or job.future.done()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return job


def test_cancel_button_drops_the_running_job(effect_on_ct):
    s = effect_on_ct
    job = _start_box_job(s)
    s.effect.cancelButton.click()
    _wait_worker(s, job)
    s.h.process_events()
    assert s.effect.job is None and _segment(s).sum() == 0 and s.h.undo_saves == 0
    assert "Cancelled" in s.effect.statusLabel.text and "nothing was written" in s.effect.statusLabel.text
    assert s.h.qt.QApplication.overrideCursor() is None and not s.effect.cancelButton.enabled


def test_cancel_after_the_model_finished_but_before_the_result_is_applied(effect_on_ct):
    """The race the old code lost: the worker is done, the poll timer has not fired yet, the user cancels."""
    s = effect_on_ct
    job = _start_box_job(s)
    _wait_worker(s, job)  # no event processed: the 100 ms poll has not seen it
    assert job.future.exception() is None  # the model produced a result
    s.effect.cancelButton.click()
    s.h.process_events()
    assert s.effect.job is None and _segment(s).sum() == 0 and s.h.undo_saves == 0
    assert "nothing was written" in s.effect.statusLabel.text


def test_leaving_the_effect_cancels_and_clears_prompts(effect_on_ct):
    """Esc is the editor's shortcut: it deactivates the effect, which must drop the job and the prompts."""
    s = effect_on_ct
    job = _start_box_job(s)
    assert s.effect.promptState.view is not None
    s.editor._pressEscape()
    assert s.editor.activeEffect() is None
    assert s.effect.promptState.view is None and s.effect.job is None
    assert s.h.qt.QApplication.overrideCursor() is None
    _wait_worker(s, job)
    s.h.process_events()  # the timer lets the dropped job end on the worker, then stops
    assert not s.effect.pollTimer.active
    assert _segment(s).sum() == 0 and s.h.undo_saves == 0


def test_cancel_key_in_a_slice_view(effect_on_ct):
    s = effect_on_ct
    job = _start_box_job(s)
    assert _event(s, _view(s, 11), "KeyPressEvent", (0, 0), key="x")
    assert s.effect.job is None and s.effect.promptState.view is None
    _wait_worker(s, job)
    s.h.process_events()
    assert _segment(s).sum() == 0


def test_effect_keys_are_not_editor_or_slice_view_shortcuts():
    """The keys the effect handles, against the shortcuts read from Slicer's sources (api/*.json)."""
    import importlib.util

    import slicer_api

    spec = importlib.util.spec_from_file_location("medsam_parameters", MODULE_DIR / "MedSAMSegmentLib" / "Parameters.py")
    P = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(P)  # a plain module (no Qt)

    for version in slicer_api.SLICER_VERSIONS:
        taken = slicer_api.slicer_json(version)["shortcuts"]
        assert "Escape" in taken["segment_editor"] and "x" not in taken["slice_view"]
        for key in (P.CANCEL_KEY, P.RUN_MARKERS_KEY):
            assert key not in taken["segment_editor"] and key not in taken["slice_view"], (version, key)
    text = (MODULE_DIR / "MedSAMSegmentLib" / "SegmentEditorEffect.py").read_text(encoding="utf-8")
    assert '"Escape"' not in text and "<b>Esc:</b>" not in text


# --------------------------------------------------------------------------------------------------- lifecycle
def test_cleanup_stops_timer_worker_and_model(effect_on_ct):
    s = effect_on_ct
    closed = []
    s.effect.session.close = lambda: closed.append(True)
    job = _start_box_job(s)
    s.editor._destroy()  # Slicer 5.10 calls cleanup() here; on 5.8 the effect is never told
    if s.h.version == "5.8.0":
        s.effect.cleanup()  # (what 5.8 users get from deactivate; called here to check it directly)
    assert closed == [True] and s.effect.worker is None and not s.effect.pollTimer.active
    _wait_worker(s, job)
    s.h.process_events()
    assert _segment(s).sum() == 0


def test_box_pipelines_are_dropped_on_layout_change(effect_on_ct):
    s = effect_on_ct
    view = _view(s, 11)
    assert _event(s, view, "LeftButtonPressEvent", (90, 90))
    assert s.scripted._actors[view] and view in s.effect.boxPipelines
    s.h.app.layoutManager()._switch(3)
    assert s.effect.boxPipelines == {} and s.scripted._actors[view] == [] and s.effect.drag is None


def test_typed_window_is_written_once_when_editing_finishes(effect_on_ct):
    s = effect_on_ct
    s.h.parameter_writes.clear()
    s.effect.windowSelector._userType("400,40")
    writes = [v for n, v in s.h.parameter_writes if n == "MedSAM.Window"]
    assert writes == ["400,40"], writes
    s.effect.windowSelector._userSelect("brain")
    assert s.scripted.parameter("Window") == "brain"


# ---------------------------------------------------------------------------------------------------- adapters
def test_adapter_selector_lists_registered_adapters_and_passes_the_choice(harness, model_session, monkeypatch, tmp_path):
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume

    monkeypatch.setenv("MEDSAMKIT_CONFIG_DIR", str(tmp_path / "config"))
    adapter = tmp_path / "liver" / "adapter.safetensors"
    adapter.parent.mkdir()
    adapter.write_bytes(b"")
    registry = tmp_path / "config" / "adapters.json"
    registry.parent.mkdir()
    registry.write_text(json.dumps({"format": "medsamkit-adapter-registry", "version": 1, "adapters": [
        {"name": "liver-ct", "path": str(adapter), "base_kind": "litemedsam"},
        {"name": "other-kind", "path": str(adapter), "base_kind": "sam-vit-b"}]}))
    harness.start(SEGMENT_MODULE)
    seen = []
    from medsamkit.mrml import session

    monkeypatch.setattr(session, "open_model_backend",  # (backend, model, checkpoint, adapter, engine, device)
                        lambda *args, **options: seen.append(args) or model_session.backend)
    node = load_volume(harness.ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(harness.ctx, node, segment_name="tumour")
    editor = harness.editor(node, seg, sid)
    editor.setActiveEffectByName("MedSAM")
    effect = editor.activeEffect().self()
    items = [effect.adapterSelector.itemText(n) for n in range(effect.adapterSelector.count)]
    assert items == ["(none)", "liver-ct"]  # only adapters for the chosen model kind
    effect.adapterSelector._userSelect("liver-ct")
    assert editor.activeEffect().parameter("Adapter") == str(adapter)
    editor.activeEffect().setParameter("Window", "lung")
    effect.submitBoxRas(*_box_ras(node))
    assert effect.waitForResult(600)
    assert seen and seen[-1][3] == str(adapter) and seen[-1][1] == "litemedsam"
    editor._destroy()


def _box_ras(volume):
    from medsamkit.mrml.volumes import volume_geometry, volume_plane_slice_to_ras

    g = volume_geometry(volume)
    c = g.ijk_to_ras_points([[90, 90, 11], [126, 125, 11]])
    return volume_plane_slice_to_ras(g, 0, 11), c[0], c[1]


def test_clicks_on_a_box_only_model_say_so(effect_on_ct):
    """Points mode with LiteMedSAM (trained with boxes only): the clicks run, and the status says why clicks
    alone give poor masks and what to do; a point-trained kind (litemedsam-clicks) gets no such note."""
    s = effect_on_ct
    k = 11
    view = _view(s, k)
    ys, xs = np.nonzero(s.label[k])
    centre = (float(xs.mean()), float(ys.mean()))
    s.scripted.setParameter("PromptMode", "points")
    assert _event(s, view, "LeftButtonPressEvent", centre)
    assert s.effect.waitForResult(600)
    assert "litemedsam was trained with boxes only" in s.effect.statusLabel.text
    assert "litemedsam-clicks" in s.effect.statusLabel.text
    s.scripted.setParameter("Model", "litemedsam-clicks")
    assert s.effect.modelSelector.currentText == "litemedsam-clicks"  # offered in the model list
    s.effect.clearPrompts()
    assert _event(s, view, "LeftButtonPressEvent", centre)
    assert s.effect.waitForResult(600)
    assert "boxes only" not in s.effect.statusLabel.text and "slice 11" in s.effect.statusLabel.text


def test_catalog_model_is_downloaded_before_the_first_prompt(effect_on_ct, monkeypatch, tmp_path):
    """A catalog model with no checkpoint and nothing in the (empty) cache: the first box asks for the download
    (ModelDownload.fetchModel: the dialog over `medsamkit models fetch`); cancelled, nothing runs and nothing is
    written; with a checkpoint chosen, or on a server, no download is asked for."""
    import importlib

    monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(tmp_path / "cache"))
    download = importlib.import_module("MedSAMSegmentLib.ModelDownload")  # the package Slicer's loader made
    asked = []
    monkeypatch.setattr(download, "fetchModel", lambda kind, parent=None: asked.append(kind) and None)
    s = effect_on_ct
    s.scripted.setParameter("Model", "medsam")
    before = _segment(s).copy()
    k = 11
    _drag_box(s, _view(s, k), *_tumour_box(s, k))
    assert asked == ["medsam"] and s.effect.job is None  # the user cancelled the download: no job
    assert "not downloaded" in s.effect.statusLabel.text and np.array_equal(_segment(s), before)
    assert s.effect.viewPrefetch.modelNotAtHand()  # a view at rest never starts the download either
    s.scripted.setParameter("CheckpointPath", str(tmp_path / "medsam_vit_b.pth"))
    assert s.effect.ensureModelFile() and asked == ["medsam"]  # a chosen file: nothing to download
    s.scripted.setParameter("CheckpointPath", "")
    s.scripted.setParameter("Backend", "http://gpu-box:8765")
    assert s.effect.ensureModelFile() and asked == ["medsam"]  # a server has its own model


def test_review_and_resume_buttons_after_a_propagation(effect_on_ct):
    """Propagate through the effect, then "Next slice to review" walks the report's queue with the slice views
    and "Show recorded prompts" re-creates the box as a markup (resume)."""
    from medsamkit.mrml.records import get_record
    from medsamkit.records.review import queue_from_entry

    s = effect_on_ct
    s.effect.reviewButton.click()
    assert "no MedSAM 3D result" in s.effect.statusLabel.text  # nothing yet: says what to do
    k = 11
    s.scripted.setParameter("PromptMode", "propagate")
    _drag_box(s, _view(s, k), *_tumour_box(s, k))
    assert s.effect.waitForResult(600)
    (entry,) = get_record(s.seg, s.sid)["entries"]
    expected = [item.index for item in queue_from_entry(_segment(s).astype(np.uint8), entry)]
    red = s.ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetOrientationToAxial()
    for n, index in enumerate(expected, 1):
        s.effect.reviewButton.click()
        assert f"slice {index} ({n} of {len(expected)}" in s.effect.statusLabel.text
        origin = [red.GetSliceToRAS().GetElement(r, 3) for r in range(3)]
        assert abs(s.g.ras_to_ijk_points([origin])[0][2] - index) < 1e-3  # the view moved to that slice
    s.effect.reviewButton.click()
    assert f"All {len(expected)} slices" in s.effect.statusLabel.text
    rois = s.ctx.scene.GetNodesByClass("vtkMRMLMarkupsROINode").GetNumberOfItems()
    s.effect.promptsButton.click()
    assert s.ctx.scene.GetNodesByClass("vtkMRMLMarkupsROINode").GetNumberOfItems() == rois + 1  # the recorded box
    assert "Recorded prompts shown as 1 markup node" in s.effect.statusLabel.text


def test_adapter_list_is_read_only_when_the_registry_changed(harness, model_session, monkeypatch, tmp_path):
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume
    from medsamkit.training import adapter_registry

    monkeypatch.setenv("MEDSAMKIT_CONFIG_DIR", str(tmp_path / "config"))
    adapters = []
    for name in ("liver", "kidney"):
        adapters.append(tmp_path / name / "adapter.safetensors")
        adapters[-1].parent.mkdir()
        adapters[-1].write_bytes(b"")
    registry = tmp_path / "config" / "adapters.json"
    registry.parent.mkdir()
    entries = [{"name": "liver-ct", "path": str(adapters[0]), "base_kind": "litemedsam"}]
    registry.write_text(json.dumps({"format": "medsamkit-adapter-registry", "version": 1, "adapters": entries}))
    reads = []
    load = adapter_registry._load
    monkeypatch.setattr(adapter_registry, "_load", lambda: reads.append(1) or load())
    harness.start(SEGMENT_MODULE)
    use_model_session(monkeypatch, model_session)
    node = load_volume(harness.ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(harness.ctx, node, segment_name="tumour")
    editor = harness.editor(node, seg, sid)
    editor.setActiveEffectByName("MedSAM")
    effect, scripted = editor.activeEffect().self(), editor.activeEffect()
    selector = effect.adapterSelector
    assert [selector.itemText(n) for n in range(selector.count)] == ["(none)", "liver-ct"]
    selector._userSelect("liver-ct")
    reads.clear()
    for n in range(50):  # as a slider of another effect would: every parameter change updates every effect
        scripted.setParameter("MarkerMarginMm", str(n))
    assert reads == [] and selector.currentText == "liver-ct"
    entries.append({"name": "kidney-ct", "path": str(adapters[1]), "base_kind": "litemedsam"})
    registry.write_text(json.dumps({"format": "medsamkit-adapter-registry", "version": 1, "adapters": entries}))
    for n in range(5):
        scripted.setParameter("MarkerMarginMm", str(n))
    assert len(reads) == 1  # read once after it changed
    assert [selector.itemText(n) for n in range(selector.count)] == ["(none)", "liver-ct", "kidney-ct"]
    assert selector.currentText == "liver-ct" and scripted.parameter("Adapter") == str(adapters[0])
    editor._destroy()


@pytest.mark.parametrize("mode", ["box", "points", "refine"])
def test_slicers_modifier_gestures_pass_through_and_ctrl_shift_click_is_a_negative_point(effect_on_ct, mode):
    """vtkMRMLSliceIntersectionWidget (Slicer 5.10) maps left press + Ctrl to blend, + Shift to pan, + Ctrl+Alt
    to rotate and + Alt+Shift to pan; Ctrl+Shift is free in slice views. On macOS Qt's Cocoa plugin turns
    Control+click into a right click and VTK's Ctrl flag is Cmd: Cmd+Shift+click arrives as Ctrl+Shift here."""
    s = effect_on_ct
    s.scripted.setParameter("PromptMode", mode)
    view = _view(s, 11)
    for chord in ({"ctrl": True}, {"shift": True}, {"alt": True}, {"ctrl": True, "alt": True},
                  {"alt": True, "shift": True}, {"ctrl": True, "shift": True, "alt": True}):
        assert not _event(s, view, "LeftButtonPressEvent", (100, 100), **chord), chord
    assert s.effect.job is None and s.effect.drag is None
    handled = _event(s, view, "LeftButtonPressEvent", (100, 100), ctrl=True, shift=True)
    if mode == "box":
        assert not handled and s.effect.drag is None  # no negative box: Slicer's (unused there) gesture
        return
    assert handled and s.effect.promptState.labels == [0]  # a negative point
    assert s.effect.waitForResult(600)
    assert "Ctrl+Shift+click" in s.effect.helpText() and "Cmd+Shift+click" in s.effect.helpText()
