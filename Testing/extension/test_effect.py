"""The Slicer GUI files: they compile, import with the engine, and drive medsamkit.mrml correctly.

Qt and the Slicer application are stubbed (Testing/extension/qt_stubs.py lists exactly what); the scene,
the segment editor logic behind the fake ``scriptedEffect`` and the engine (LiteMedSAM) are real. The
effect's EngineHolder is pointed at the session's engine instead of loading a second model.
Mouse events go through the effect's own processInteractionEvents with a fake slice view whose
display XY are the slice's pixel coordinates.
"""
from __future__ import annotations

import ast
import importlib
import py_compile
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import qt_stubs
from mrml_fixtures import ctx, engine, slicer_core  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "MedSAMSegment"
DATA = REPO / "medsamkit" / "data"
TEMPLATE_ORDER = ["__init__", "clone", "icon", "helpText", "setupOptionsFrame", "setMRMLDefaults",
                  "updateGUIFromMRML", "updateMRMLFromGUI", "processInteractionEvents"]


def test_gui_files_compile(tmp_path):
    files = sorted(MODULE_DIR.rglob("*.py"))
    assert len(files) >= 8
    for n, path in enumerate(files):
        py_compile.compile(str(path), cfile=str(tmp_path / f"{n}.pyc"), doraise=True)


def test_effect_keeps_slicer_template_method_order():
    tree = ast.parse((MODULE_DIR / "MedSAMSegmentLib" / "SegmentEditorEffect.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SegmentEditorEffect")
    methods = [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]
    positions = [methods.index(m) for m in TEMPLATE_ORDER]
    assert positions == sorted(positions), methods


@pytest.fixture()
def gui(monkeypatch, slicer_core):
    """Stubs installed, MedSAMSegment/ importable, fresh imports of the GUI modules."""
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    app = qt_stubs.install(monkeypatch)
    for name in [n for n in sys.modules if n == "MedSAMSegment" or n.startswith("MedSAMSegmentLib")]:
        monkeypatch.delitem(sys.modules, name)
    return app


def test_module_registers_the_effect_at_startup(gui):
    module = importlib.import_module("MedSAMSegment")
    parent = types.SimpleNamespace()
    instance = module.MedSAMSegment(parent)
    assert parent.hidden is True and parent.dependencies == ["Segmentations"]
    (signal, slot), = gui.connections
    assert signal == "startupCompleted()" and slot == instance.registerEditorEffect
    slot()  # runs with the stubbed qSlicerSegmentEditorScriptedEffect; the file it registers must exist
    assert (Path(module.__file__).parent / "MedSAMSegmentLib" / "SegmentEditorEffect.py").is_file()
    test = module.MedSAMSegmentTest()
    assert callable(test.runTest) and callable(test.test_BoxOnSampleCT)


class FakeScriptedEffect(qt_stubs.Permissive):
    """qSlicerSegmentEditorScriptedEffect's Python-facing API over slicer-core's editor logic."""

    def __init__(self, ctx, editor_node, logic):
        self.params = {}
        self.editor_node, self.logic = editor_node, logic
        self.undo_saves = 0

    def setParameterDefault(self, name, value):
        self.params.setdefault(name, str(value))

    def setParameter(self, name, value):
        self.params[name] = str(value)

    def parameter(self, name):
        return self.params.get(name, "")

    def doubleParameter(self, name):
        return float(self.params.get(name, 0))

    def integerParameter(self, name):
        return int(float(self.params.get(name, 0)))

    def parameterSetNode(self):
        return self.editor_node

    def defaultModifierLabelmap(self):
        assert self.logic.ResetModifierLabelmapToDefault()
        return self.logic.GetModifierLabelmap()

    def saveStateForUndo(self):
        self.undo_saves += 1
        self.logic.SaveStateForUndo()

    def modifySelectedSegmentByLabelmap(self, modifier, mode):
        sid = self.editor_node.GetSelectedSegmentID()
        self.logic.SetCurrentSegmentID(sid)
        self.logic.ModifySegmentByLabelmap(self.editor_node.GetSegmentationNode(), sid, modifier, mode, True, False)

    def confirmCurrentSegmentVisible(self):
        return True


class FakeSliceView(qt_stubs.Permissive):
    """A slice view showing slice ``k`` of the volume; display XY = the slice's pixel XY."""

    def __init__(self, geometry, k):
        from medsamkit.mrml.volumes import numpy_to_matrix, volume_plane_slice_to_ras

        self.g, self.k = geometry, k
        self.matrix = numpy_to_matrix(volume_plane_slice_to_ras(geometry, 0, k))

    def className(self):
        return "qMRMLSliceWidget"

    def xyToRas(self, xy):
        return self.g.ijk_to_ras_points([[xy[0], xy[1], self.k]])[0]

    def mrmlSliceNode(self):
        return types.SimpleNamespace(GetSliceToRAS=lambda: self.matrix)


class FakeInteractor:
    def __init__(self, xy, ctrl=False, key=""):
        self.xy, self.ctrl, self.key = xy, ctrl, key

    def GetEventPosition(self):
        return self.xy

    def GetControlKey(self):
        return self.ctrl

    def GetShiftKey(self):
        return False

    def GetAltKey(self):
        return False

    def GetKeySym(self):
        return self.key


@pytest.fixture()
def effect_on_ct(gui, ctx, engine, monkeypatch):
    import slicer
    import vtk

    from medsamkit.io import read_image
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry

    monkeypatch.setattr(slicer, "mrmlScene", ctx.scene, raising=False)  # the panel uses the app's scene
    effect_module = importlib.import_module("MedSAMSegmentLib.SegmentEditorEffect")
    target_module = importlib.import_module("MedSAMSegmentLib.EffectTarget")
    monkeypatch.setattr(target_module.EngineHolder, "get", lambda self, **options: engine)

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    other = seg.GetSegmentation().AddEmptySegment("other", "other", [0.1, 0.2, 0.9])
    editor_node = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(ctx.scene)
    logic.SetMRMLApplicationLogic(ctx.app)
    logic.SetSegmentEditorNode(editor_node)
    logic.SetSegmentationNode(seg)
    logic.SetSourceVolumeNode(node)
    logic.SetCurrentSegmentID(sid)
    fake = FakeScriptedEffect(ctx, editor_node, logic)
    effect = effect_module.SegmentEditorEffect(fake)
    effect.setMRMLDefaults()
    effect.setupOptionsFrame()
    effect.updateGUIFromMRML()
    fake.setParameter("Window", "lung")
    effect.activate()
    return types.SimpleNamespace(effect=effect, fake=fake, logic=logic, ctx=ctx, node=node, seg=seg, sid=sid,
                                 other=other, g=volume_geometry(node), vtk=vtk,
                                 label=read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0)


def _segment(s, sid=None):
    from medsamkit.mrml.segments import segment_array

    return segment_array(s.ctx, s.seg, sid or s.sid, s.node).astype(bool)


def _event(s, view, event, xy, ctrl=False, key=""):
    return s.effect.processInteractionEvents(FakeInteractor(xy, ctrl, key), event, view)


def test_box_drag_then_negative_click_through_the_effect(effect_on_ct):
    s, C = effect_on_ct, effect_on_ct.vtk.vtkCommand
    k = 11
    view = FakeSliceView(s.g, k)
    ys, xs = np.nonzero(s.label[k])
    x0, y0, x1, y1 = xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3
    assert _event(s, view, C.LeftButtonPressEvent, (x0, y0))
    assert _event(s, view, C.MouseMoveEvent, ((x0 + x1) // 2, (y0 + y1) // 2))
    assert _event(s, view, C.LeftButtonReleaseEvent, (x1, y1))
    assert s.effect.job is not None  # running on the worker; the UI thread returned at once
    assert s.effect.waitForResult(600)
    first = _segment(s)
    assert first[k].sum() > 0 and first.sum() == first[k].sum()
    d = 2 * (first[k] & s.label[k]).sum() / (first[k].sum() + s.label[k].sum())
    assert d > 0.75, d  # measured 0.814, as the engine alone with this box
    assert "slice 11" in s.effect.statusLabel.text and s.fake.undo_saves == 1
    # Refine mode: Ctrl+click (negative) on a pixel the model wrongly included.
    s.fake.setParameter("PromptMode", "refine")
    wy, wx = np.argwhere(first[k] & ~s.label[k])[0]
    box_prompt = s.effect.promptState.box.copy()
    assert _event(s, view, C.LeftButtonPressEvent, (float(wx), float(wy)), ctrl=True)
    assert s.effect.waitForResult(600)
    second = _segment(s)
    assert not second[k, wy, wx] and s.fake.undo_saves == 2
    assert s.effect.promptState.labels == [0] and np.array_equal(s.effect.promptState.box, box_prompt)
    s.logic.Undo()  # one result, one undo step
    assert np.array_equal(_segment(s), first)
    assert _event(s, view, C.KeyPressEvent, (0, 0), key="Escape")
    assert s.effect.promptState.view is None


def test_result_is_dropped_when_the_selection_changed(effect_on_ct):
    s, C = effect_on_ct, effect_on_ct.vtk.vtkCommand
    view = FakeSliceView(s.g, 11)
    _event(s, view, C.LeftButtonPressEvent, (90, 90))
    _event(s, view, C.LeftButtonReleaseEvent, (126, 125))
    s.fake.editor_node.SetSelectedSegmentID(s.other)  # the user picked another segment meanwhile
    assert s.effect.waitForResult(600)
    assert "selection changed" in s.effect.statusLabel.text
    assert _segment(s).sum() == 0 and _segment(s, s.other).sum() == 0 and s.fake.undo_saves == 0


def test_oblique_view_is_reported_not_raised(effect_on_ct):
    s, C = effect_on_ct, effect_on_ct.vtk.vtkCommand
    from medsamkit.mrml.volumes import numpy_to_matrix

    view = FakeSliceView(s.g, 11)
    tilted = np.eye(4)
    tilted[:3, :3] = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    view.matrix = numpy_to_matrix(tilted)
    _event(s, view, C.LeftButtonPressEvent, (90, 90))
    _event(s, view, C.LeftButtonReleaseEvent, (126, 125))
    assert s.effect.job is None and "oblique" in s.effect.statusLabel.text


def test_marker_clicks_and_run_through_the_panel(effect_on_ct):
    """Markers mode: two clicks per line on slices 10 and 12, Show boxes, Run -> slices 10-12 written."""
    s, C = effect_on_ct, effect_on_ct.vtk.vtkCommand
    from medsamkit.reader import axis_lines_2d

    s.effect.onPromptMode("markers")
    s.fake.setParameter("PromptMode", "markers")
    for k in (10, 12):
        view = FakeSliceView(s.g, k)
        for line in axis_lines_2d(s.label[k], s.g.slice_spacing_xy(0)):
            for xy in line:
                assert _event(s, view, C.LeftButtonPressEvent, tuple(xy))
    assert len(s.effect.markerPanel.lines()) == 4
    s.effect.markerPanel.onShowBoxes()
    assert "3 boxes on slices 10-12" in s.effect.statusLabel.text
    assert _event(s, view, C.KeyPressEvent, (0, 0), key="Return")  # Enter runs the markers
    assert s.effect.job is not None and s.effect.waitForResult(600)
    written = _segment(s)
    assert sorted(set(np.nonzero(written)[0])) == [10, 11, 12]
    d = 2 * (written & s.label).sum() / (written.sum() + s.label.sum())
    assert d > 0.75, d  # measured 0.820, as the in-scene marker run and the batch
    s.effect.markerPanel.onClear()
    assert s.effect.markerPanel.lines() == []
