"""What each use installs, inside the (reproduced) Slicer: the installer's dialog and pip call, the URL backend's client
packages, and the startup check on an old Slicer. pip itself is the harness's recording stand-in.
"""
from __future__ import annotations

import importlib
import sys

from slicer_fixtures import SEGMENT_MODULE, TRAINING_MODULE, ctx, harness, harness_5_8, slicer_core  # noqa: F401


def _missing(monkeypatch, names):
    deps = importlib.import_module("MedSAMSegmentLib.Dependencies")
    real = deps.missing_requirements
    monkeypatch.setattr(deps, "missing_requirements",
                        lambda reqs: [r for r in reqs if deps.requirement_name(r) in names] or real([]))


def test_pip_runs_with_constraints_pinning_every_installed_distribution(harness, monkeypatch):
    import importlib.metadata

    import numpy

    harness.start(SEGMENT_MODULE)
    install = importlib.import_module("MedSAMSegmentLib.Install")
    seen = []
    monkeypatch.setattr(harness.slicer.util, "pip_install", lambda reqs: seen.append(
        (list(reqs), open(reqs[1], encoding="utf-8").read())))
    _missing(monkeypatch, {"scipy"})
    install.ensureDependencies(askConfirmation=True)
    (args, constraints), = seen
    assert args[0] == "-c" and args[2:] == [r for r in args[2:] if r.startswith("scipy")] and len(args) == 3
    pins = constraints.split()
    assert f"numpy=={numpy.__version__}" in pins and f"pytest=={importlib.metadata.version('pytest')}" in pins
    assert pins == importlib.import_module("MedSAMSegmentLib.Dependencies").installed_constraints()
    kind, text = next(d for d in harness.dialogs if d[0] == "confirmOkCancel")
    assert "scipy" in text


def test_url_backend_installs_the_client_packages_with_the_same_dialog(harness, monkeypatch):
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume
    from slicer_fixtures import DATA

    harness.start(SEGMENT_MODULE)
    node = load_volume(harness.ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(harness.ctx, node, segment_name="tumour")
    editor = harness.editor(node, seg, sid)
    editor.setActiveEffectByName("MedSAM")
    effect = editor.activeEffect().self()
    _missing(monkeypatch, {"httpx", "zstandard"})
    harness.answers["confirmOkCancelDisplay"] = False  # the user declines: nothing is installed
    effect.backendEdit._userType("http://127.0.0.1:8765")
    assert editor.activeEffect().parameter("Backend") == "http://127.0.0.1:8765"
    assert not effect.ensureSession()
    kind, text = [d for d in harness.dialogs if d[0] == "confirmOkCancel"][-1]
    assert "httpx" in text and "zstandard" in text and "torch" not in text
    assert not any("medsamkit[server]" in t for _, t in harness.dialogs) and harness.pip_calls == []
    editor._destroy()


def test_training_uses_the_same_installer_with_the_train_extra(harness, monkeypatch):
    harness.start(SEGMENT_MODULE, TRAINING_MODULE)
    _missing(monkeypatch, {"safetensors", "segment-anything"})
    harness.answers["confirmOkCancelDisplay"] = False
    assert sys.modules["MedSAMTraining"].ensureDependencies() is False
    kind, text = [d for d in harness.dialogs if d[0] == "confirmOkCancel"][-1]
    assert "safetensors" in text and "segment-anything" in text


def test_slicer_5_8_is_refused_with_a_clear_message_and_no_effect(harness_5_8, monkeypatch):
    """Slicer 5.8's loader (imp.load_source) and its Python 3.9: the module loads, says why, registers nothing."""
    harness = harness_5_8
    harness.loader.load(SEGMENT_MODULE)
    real = sys.version_info
    monkeypatch.setattr(sys, "version_info", (3, 9, 10, "final", 0))  # Slicer 5.8's Python
    try:
        harness.loader.startup_completed()
    finally:
        monkeypatch.setattr(sys, "version_info", real)
    assert harness.slicer.qSlicerSegmentEditorEffectFactory.instance().registeredEffects() == []
    kind, text = [d for d in harness.dialogs if d[0] == "warning"][-1]
    assert "Slicer 5.10 or later" in text and "Python 3.9" in text
