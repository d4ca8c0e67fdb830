"""The engine never imports slicer or Qt (STYLE rule 1): import every engine module in a fresh process."""
import json
import subprocess
import sys

from conftest import REPO

CODE = r"""
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import medsamkit
names = [m.name for m in pkgutil.walk_packages(medsamkit.__path__, "medsamkit.")
         if not m.name.startswith("medsamkit.mrml") and not m.name.endswith("__main__")]
failed = {}
for n in names:
    try:
        importlib.import_module(n)
    except Exception as exc:
        failed[n] = repr(exc)
from medsamkit.models import load_model  # the lazily imported model stack too
load_model(device="cpu")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("slicer", "qt", "ctk", "vtk", "PythonQt", "PySide6", "PyQt5"))
print(json.dumps({"names": names, "failed": failed, "bad": bad}))
"""


def test_engine_imports_without_slicer_or_qt():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert "medsamkit.predictor" in info["names"] and "medsamkit.cli" in info["names"]
    assert info["failed"] == {}
    assert info["bad"] == [], f"engine modules pulled in GUI/MRML modules: {info['bad']}"


def test_importing_medsamkit_is_light():
    res = subprocess.run([sys.executable, "-c", "import medsamkit, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.stdout.strip() == "False"
