"""The extension as Slicer loads it: module file -> startupCompleted -> registerEditorEffect -> the effect
the Segment Editor clones -> options frame -> activate. Through slicer_app's reproduction of Slicer's
loaders (both 5.8's imp.load_source and 5.10's spec_from_file_location), never a plain import.
"""
from __future__ import annotations

import sys

import pytest

from slicer_fixtures import SEGMENT_MODULE, TRAINING_MODULE, ctx, harness, slicer_core  # noqa: F401


def test_effect_registers_at_startup_and_sets_up_its_options(harness):
    core, = harness.start(SEGMENT_MODULE)
    assert core.hidden is True and core.dependencies == ["Segmentations"]
    registered = harness.slicer.qSlicerSegmentEditorEffectFactory.instance().registeredEffects()
    assert [e.name for e in registered] == ["MedSAM"]
    # setPythonSource found the class in the package: sys.modules["MedSAMSegmentLib"] is still the package
    package = sys.modules["MedSAMSegmentLib"]
    assert hasattr(package, "__path__") and package.SegmentEditorEffect is type(registered[0].self())
    # the editor clones the registered effect and builds its options frame
    editor = harness.slicer.qMRMLSegmentEditorWidget()
    effect = editor._effects[0]
    assert effect is not registered[0] and effect.name == "MedSAM"
    node = harness.ctx.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.setMRMLSegmentEditorNode(node)
    assert node.GetAttribute("MedSAM.Model") == "litemedsam"
    assert len(effect._options) >= 5


def test_editor_updates_the_gui_before_activating_as_slicer_does(harness):
    """qSlicerSegmentEditorScriptedEffect::activate runs the base class's activate(), which ends with
    updateGUIFromMRML(), before the Python activate(): the effect must cope with that order."""
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume
    from slicer_fixtures import DATA

    harness.start(SEGMENT_MODULE)
    node = load_volume(harness.ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(harness.ctx, node, segment_name="tumour")
    editor = harness.editor(node, seg, sid)
    effect = editor.effectByName("MedSAM").self()
    calls = []
    for name in ("activate", "updateGUIFromMRML", "deactivate"):
        real = getattr(effect, name)
        setattr(effect, name, lambda real=real, name=name: (calls.append(name), real())[1])
    editor.setActiveEffectByName("MedSAM")
    assert calls == ["updateGUIFromMRML", "activate"]
    editor.setActiveEffect(None)
    assert calls[2:] == ["deactivate"]
    editor._destroy()


def test_training_module_loads_with_its_widget_class(harness):
    core, = harness.start(TRAINING_MODULE)
    assert core.title == "MedSAM Training" and core._widgetClass is not None
    assert harness.slicer.modules.MedSAMTrainingInstance is core._python


@pytest.mark.parametrize("version", ["5.10.0"])
def test_loader_reproduces_the_not_a_package_failure(version, tmp_path, monkeypatch):
    """The loader itself: an effect file that imports from its own folder's package fails as in Slicer
    unless the package was imported first. (5.8's loader only serves test_slicer_5_8_is_refused_....)"""
    import importlib

    import slicer_app

    pkg = "DemoLib" + version.replace(".", "")  # a fresh name per run: sys.modules keeps submodules
    lib = tmp_path / pkg
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "Helper.py").write_text("X = 1\n")
    effect = lib / "SegmentEditorEffect.py"
    effect.write_text(f"from {pkg}.Helper import X\nclass SegmentEditorEffect:\n    def __init__(self, e): self.e = e\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match=f"'{pkg}' is not a package"):
        slicer_app._class_from_source(version, pkg, "SegmentEditorEffect", str(effect))
    for name in [n for n in sys.modules if n.split(".")[0] == pkg]:
        monkeypatch.delitem(sys.modules, name)
    (lib / "__init__.py").write_text("from .SegmentEditorEffect import SegmentEditorEffect\n")
    importlib.import_module(pkg)  # imported first, as the fixed registerEditorEffect does
    cls, module = slicer_app._class_from_source(version, pkg, "SegmentEditorEffect", str(effect))
    assert module is sys.modules[pkg] and hasattr(module, "__path__") and cls.__module__ == f"{pkg}.SegmentEditorEffect"
    for name in [n for n in sys.modules if n.split(".")[0] == pkg]:
        monkeypatch.delitem(sys.modules, name)
