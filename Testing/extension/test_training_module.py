"""MedSAMTraining as Slicer runs it: loaded through the Slicer loader, its widget set up on strict stand-ins
and driven by its own buttons: dataset from a segmentation in the scene, Start (a real training process,
2 steps), progress through the widget's timer, Stop, Register adapter -> the MedSAM effect's list.
"""
from __future__ import annotations

import json
import os
import sys
import time

from slicer_fixtures import DATA, SEGMENT_MODULE, TRAINING_MODULE, ctx, harness, slicer_core  # noqa: F401


def _button(widget, text):
    return next(w for w in widget.parent._children() if getattr(w, "API", "") == "QPushButton" and w.text == text)


def test_training_widget_exports_trains_and_registers(harness, monkeypatch, tmp_path):
    if harness.version != "5.10.0":
        import pytest

        pytest.skip("one training run is enough: both loaders load the module in test_install_in_slicer.py")
    monkeypatch.setenv("MEDSAMKIT_CONFIG_DIR", str(tmp_path / "config"))
    _, training = harness.start(SEGMENT_MODULE, TRAINING_MODULE)
    module = sys.modules["MedSAMTraining"]
    # the training process runs this interpreter (PythonSlicer in Slicer); 2 steps, as the module self-test
    monkeypatch.setattr(module.MedSAMTrainingLogic, "make_config", staticmethod(
        lambda *a, **k: module.TrainingLogic.make_config(*a, **k, max_steps=2, slices_per_volume=4,
                                                        val_fraction=0, augment="none")))
    parent = harness.qt.QWidget()
    parent.setLayout(harness.qt.QVBoxLayout())
    widget = training._widgetClass(parent)
    widget.setup()
    widget.logic.python = sys.executable
    volume = harness.slicer.util.loadVolume(str(DATA / "sample_lung_ct.nii.gz"))
    label = harness.slicer.util.loadLabelVolume(str(DATA / "sample_lung_ct.label.nii.gz"))
    seg = harness.ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    harness.ctx.segmentations.ImportLabelmapToSegmentationNode(label, seg, "")
    widget.volumeSelector.setCurrentNode(volume)
    widget.segmentationSelector.setCurrentNode(seg)
    _button(widget, "Add volume + segmentation").click()
    assert widget.pairList.count == 1
    widget.runDirEdit.currentPath = str(tmp_path / "run")
    widget.deviceCombo._userSelect("cpu")
    widget.epochsSpin.value = 1
    widget.batchSpin.value = 2
    widget.startButton.click()
    assert not [d for d in harness.dialogs if d[0] == "error"], harness.dialogs
    assert widget.timer.active
    deadline = time.monotonic() + 600
    while widget.timer.active and time.monotonic() < deadline:
        harness.process_events(0.5)
    assert "finished" in widget.statusLabel.text, widget.statusLabel.text
    assert widget.progressBar.maximum == 2 and widget.progressBar.value == 2
    widget.stopButton.click()  # stopping a finished run is harmless and says so in the status
    widget.nameEdit.text = "lung-test"
    widget.registerButton.click()
    assert ("info", "Adapter 'lung-test' is now available in the MedSAM effect.") in harness.dialogs
    entries = json.loads((tmp_path / "config" / "adapters.json").read_text())["adapters"]
    assert [e["name"] for e in entries] == ["lung-test"] and os.path.isfile(entries[0]["path"])
    widget.cleanup()
    assert not widget.timer.active


def _stubborn_python(tmp_path):
    """An "interpreter" whose child ignores SIGTERM and the STOP file: only a kill ends it."""
    script = tmp_path / "stubborn-python"
    script.write_text(f"#!/bin/sh\nexec '{sys.executable}' -c 'import signal, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(\"started\", flush=True)\n"
                      "time.sleep(600)'\n")
    script.chmod(0o755)
    return str(script)


def test_stop_returns_at_once_and_the_timer_escalates_to_kill(harness, monkeypatch, tmp_path):
    import pytest

    if harness.version != "5.10.0" or os.name == "nt":
        pytest.skip("POSIX signals; the loaders do not matter here")
    import signal

    from medsamkit.training import launcher

    _, training = harness.start(SEGMENT_MODULE, TRAINING_MODULE)
    monkeypatch.setattr(launcher, "STOP_GRACE_S", 0.3)
    parent = harness.qt.QWidget()
    parent.setLayout(harness.qt.QVBoxLayout())
    widget = training._widgetClass(parent)
    widget.setup()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: litemedsam\n")
    widget.logic.process = launcher.TrainingProcess(run, python=_stubborn_python(tmp_path))
    widget.logic.process.start(None)
    proc = widget.logic.process.proc
    deadline = time.monotonic() + 30
    while "started" not in (run / "train.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGTERM is ignored from here on
    t0 = time.monotonic()
    widget.stopButton.click()
    assert time.monotonic() - t0 < 0.1  # Slicer is not frozen while the child takes its time
    assert (run / "STOP").is_file() and proc.poll() is None
    assert widget.timer.active and "stopping" in widget.statusLabel.text
    while widget.timer.active and time.monotonic() < deadline:
        harness.process_events(0.1)
    assert proc.returncode == -signal.SIGKILL  # terminate was ignored: killed after the second grace period
    assert "stopped" in widget.statusLabel.text and "terminate, kill" in widget.statusLabel.text
    widget.cleanup()


def test_training_and_model_processes_open_no_console_window_on_windows(monkeypatch, tmp_path):
    import subprocess

    from medsamkit.backend import process
    from medsamkit.training import launcher

    seen = {}

    class Popen:
        def __init__(self, args, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(launcher.subprocess, "Popen", Popen)
    (tmp_path / "config.yaml").write_text("model: litemedsam\n")
    launcher.TrainingProcess(tmp_path, python="python").start(None)
    assert "creationflags" not in seen  # no such option on this platform
    monkeypatch.setattr(launcher.sys, "platform", "win32")
    launcher.TrainingProcess(tmp_path, python="python").start(None)
    assert seen["creationflags"] & 0x08000000  # CREATE_NO_WINDOW
    # the model process: Windows' own subprocess constants (absent here), then the options its Popen gets
    for name, value in (("CREATE_NO_WINDOW", 0x08000000), ("CREATE_NEW_PROCESS_GROUP", 0x200),
                        ("STARTF_USESHOWWINDOW", 1), ("STARTUPINFO", type("STARTUPINFO", (), {"dwFlags": 0}))):
        monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(process.os, "name", "nt")
    options = process._detached()
    monkeypatch.undo()
    assert options["creationflags"] & 0x08000000 and options["startupinfo"].dwFlags & 1
