"""Run by test_installed_extension.py inside the Slicer-shaped Python (installed_extension.py), never by
pytest directly: a first-use session of the installed extension, as a new user has it.

argv: <qt-scripted-modules folder> <work folder> <torch paths JSON or "-">. sys.path holds the installed
tree and this folder (the Qt/Slicer stand-ins) only: no repository, no editable medsamkit.

1. Slicer starts and loads MedSAMSegment from the installed tree (slicer_app's 5.10 loader).
2. The effect's first-use installer runs for real (Install.ensureDependencies, the dialog answered
   "OK"): PyTorch Utils installs torch when the "local" set needs it (here: the test runner's torch,
   linked in, standing for the GPU build PyTorch Utils would download), slicer.util.pip_install runs
   Slicer 5.10's ``PythonSlicer -m pip install`` with the installer's constraints.
3. HTTP_PROXY/HTTPS_PROXY/ALL_PROXY are set to a dead address (a hospital proxy cannot reach loopback).
4. The module's self-test (a box on the bundled CT through the effect, its model session and model process).
5. A box with the litemedsam-clicks model on a Testing/Data volume, through the same effect.

The last line printed is a JSON summary the test checks.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shlex
import site
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

DEAD_PROXY = "http://127.0.0.1:9"
TESTING_DATA = Path(__file__).resolve().parents[1] / "Data"


class Patches:
    """The part of pytest's MonkeyPatch that slicer_app.Harness uses (pytest is not in Slicer's Python)."""

    def setitem(self, mapping, key, value):
        mapping[key] = value

    def delitem(self, mapping, key, raising=True):
        mapping.pop(key, None)

    def setattr(self, target, name, value, raising=True):
        setattr(target, name, value)


def slicer_pip_install(requirements):
    """Slicer 5.10's slicer.util.pip_install -> _executePythonModule -> launchConsoleProcess/logProcessOutput
    (Base/Python/slicer/util.py), run as from Slicer's console: PythonSlicer beside the executable."""
    args = ("install", *shlex.split(requirements)) if isinstance(requirements, str) else ("install", *requirements)
    exe = os.path.join(os.path.dirname(sys.executable), "PythonSlicer" + (".exe" if os.name == "nt" else ""))
    proc = subprocess.Popen([exe, "-m", "pip", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    for line in proc.stdout:
        print(line.rstrip(), file=sys.stderr)
    proc.wait()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)


def pytorch_utils_module(torch_paths, work: Path):
    """PyTorch Utils' logic (the PyTorch extension MedSAM depends on): installTorch puts torch into this
    Python. It links the given torch files instead of downloading the GPU build (gigabytes)."""
    module = types.ModuleType("PyTorchUtils")
    calls = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **kwargs):
            calls.append(torchVersionRequirement)
            folder = work / "pytorch-utils"
            folder.mkdir(exist_ok=True)
            for path in torch_paths:
                link = folder / Path(path).name
                if not link.exists():
                    link.symlink_to(path)
            (Path(site.getsitepackages()[0]) / "pytorch-utils.pth").write_text(str(folder) + "\n")
            site.addsitedir(str(folder))
            return importlib.import_module("torch")

    module.PyTorchUtilsLogic = PyTorchUtilsLogic
    module.calls = calls
    return module


def versions() -> dict:
    return {d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}


def box_with_clicks_model(harness, module_dir: Path) -> float:
    """A box on brain1's largest tumour slice through the effect with Model = litemedsam-clicks -> Dice."""
    import slicer
    from medsamkit.metrics import dice
    from medsamkit.mrml.volumes import volume_geometry, volume_plane_slice_to_ras

    volume = slicer.util.loadVolume(str(TESTING_DATA / "brain1.img.nii.gz"))
    label = slicer.util.loadLabelVolume(str(TESTING_DATA / "brain1.seg.nii.gz"))
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("tumour")
    editor = harness.editor(volume, segmentation, segment_id)
    editor.setActiveEffectByName("MedSAM")
    effect = editor.activeEffect()
    effect.setParameter("Model", "litemedsam-clicks")
    effect.setParameter("WriteMode", "replace")
    reference = slicer.util.arrayFromVolume(label) > 0
    k = int(np.argmax(reference.sum(axis=(1, 2))))
    ys, xs = np.nonzero(reference[k])
    geometry = volume_geometry(volume)
    corners = geometry.ijk_to_ras_points([[xs.min() - 3, ys.min() - 3, k], [xs.max() + 3, ys.max() + 3, k]])
    effect.self().submitBoxRas(volume_plane_slice_to_ras(geometry, 0, k), corners[0], corners[1])
    if not effect.self().waitForResult(600):
        raise RuntimeError("the litemedsam-clicks box did not finish in 10 minutes")
    written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume) > 0
    editor.setActiveEffect(None)
    editor._destroy()
    return float(dice(written[k], reference[k]))


def main(module_dir: Path, work: Path, torch_json: str) -> dict:
    import slicer  # slicer-core: the scene layer of this "Slicer"

    import slicer_app
    from medsamkit.mrml.context import make_context, quiet_vtk

    summary = {"medsamkit": str(Path(importlib.import_module("medsamkit").__file__).parent)}
    quiet_vtk("ERROR")
    patches = Patches()
    harness = slicer_app.Harness(patches, "5.10.0", make_context(), work)
    slicer.util.pip_install = slicer_pip_install  # the real pip, as Slicer runs it
    torch_paths = json.loads(Path(torch_json).read_text()) if torch_json != "-" else []
    pytorch_utils = pytorch_utils_module(torch_paths, work)
    sys.modules["PyTorchUtils"] = pytorch_utils
    harness.start(module_dir / "MedSAMSegment.py")

    before = versions()
    install = importlib.import_module("MedSAMSegmentLib.Install")
    summary["installed"] = install.ensureDependencies(askConfirmation=True, purpose="local")
    after = versions()
    summary["replaced"] = {n: [v, after.get(n)] for n, v in before.items() if after.get(n) != v}
    summary["added"] = sorted(set(after) - set(before))
    summary["torch_through_pytorch_utils"] = pytorch_utils.calls
    if "torch" in after:  # still the build PyTorch Utils installed, not one pip brought for torchvision
        summary["torch_at"] = str(Path(importlib.metadata.distribution("torch").locate_file("")))
    summary["install_dialogs"] = [list(d) for d in harness.dialogs]
    if not summary["installed"]:
        return summary

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ[var] = DEAD_PROXY
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)

    harness.dialogs.clear()
    from medsamkit.mrml.session import ModelSession

    real_open, engines = ModelSession.open, summary.setdefault("engines", [])

    def open_(self, *args, **kwargs):  # records which model served each of the effect's requests
        session = real_open(self, *args, **kwargs)
        if session.description not in engines:
            engines.append(session.description)
        return session

    ModelSession.open = open_
    slicer.selfTests["MedSAMSegment"]()
    summary["self_test"] = [d[1] for d in harness.dialogs if d[0] == "delay"]
    from medsamkit.backend.process import _LIVE

    summary["model_processes"] = sum(p.starts for p in list(_LIVE))
    summary["clicks_dice"] = box_with_clicks_model(harness, module_dir)
    summary["model_processes"] = max(summary["model_processes"], sum(p.starts for p in list(_LIVE)))
    summary["critical"] = harness.critical
    return summary


if __name__ == "__main__":
    os.environ.setdefault("MEDSAMKIT_CONFIG_DIR", tempfile.mkdtemp(prefix="medsamkit-config-"))
    result = main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
    print(json.dumps(result))
