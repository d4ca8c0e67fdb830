"""``medsamkit recist --studies --cluster`` on a local Ray cluster (2 CPUs) started by the test: the same files as
the plain run, voxel for voxel, while a worker is killed (by PID) during a task; a failing study reported while
the others finish; Ctrl-C mid-run leaves complete studies only, and the next run resumes."""
from __future__ import annotations

import _thread
import json
import os
import signal
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cluster_fixtures import local_recist, ray_cluster, studies  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("highdicom")

TASK_TITLE = "ray::medsamkit-recist"


def _cli(*argv) -> int:
    from medsamkit.cli.commands import main

    return main(["recist", *map(str, argv), "--quiet"])


def _tasks_running() -> list:
    """PIDs of this session's Ray workers running a recist task (their process title names the task)."""
    import psutil

    out = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith(TASK_TITLE):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def _volumes(folder: Path) -> dict:
    import pydicom
    import SimpleITK as sitk

    out = {f: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f))) for f in ("lesions.nii.gz", "lesions.seg.nrrd")}
    if (folder / "lesions.seg.dcm").is_file():
        out["lesions.seg.dcm"] = pydicom.dcmread(folder / "lesions.seg.dcm").pixel_array
    record = json.loads((folder / "lesions.seg.nrrd.prompts.json").read_text())
    out["record"] = [(e["kind"], e["result"]["mask_sha256"], e["prompt"]["plan"]) for e in record["entries"]]
    return out


def _hidden(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_cluster_equals_local_run_and_survives_a_killed_worker(ray_cluster, studies, local_recist, tmp_path, capsys):
    import psutil

    worker_path = ray_cluster.get(ray_cluster.remote(lambda: __import__("medsamkit").__file__).remote())
    assert Path(worker_path).resolve().is_relative_to(Path(__file__).resolve().parents[2]), worker_path
    killed = []

    def killer():  # kill the first worker seen running a study, a moment into its task
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not killed:
            pids = _tasks_running()
            if pids:
                time.sleep(0.5)
                if psutil.pid_exists(pids[0]):
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    rc = _cli("--studies", studies, "--out", tmp_path / "ray", "--cluster", "auto")
    thread.join()
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert killed, "no task was seen running"
    assert not psutil.pid_exists(killed[0])
    summary = json.loads((tmp_path / "ray" / "cluster-summary.json").read_text())
    names = sorted(["study0", "study1", "study2", "pair"])
    assert sorted(r["item"] for r in summary["items"]) == names
    assert summary["counts"] == {"ok": 4, "failed": 0, "cancelled": 0}
    assert all(not r["worker"].endswith(f":{killed[0]}") for r in summary["items"])  # re-run elsewhere
    assert _hidden(tmp_path / "ray") == []  # the killed task's temporary folder is gone
    for name in names:
        local, ray = _volumes(local_recist / name), _volumes(tmp_path / "ray" / name)
        assert local.keys() == ray.keys() and ("lesions.seg.dcm" in local) == name.startswith("study")
        for key in local:
            if key == "record":
                assert local[key] == ray[key], name
            else:
                assert np.array_equal(local[key], ray[key]), (name, key)
        assert int(local["lesions.nii.gz"].sum()) > 100
        table = json.loads((tmp_path / "ray" / name / "lesions.json").read_text())
        assert table["lesions"][0]["status"] == "ok"


def test_failing_study_reported_ctrl_c_then_resume(ray_cluster, studies, tmp_path, capsys):
    root = tmp_path / "studies"
    for n in range(5):  # copies of the good studies, and one whose SR refers to a series it does not hold
        shutil.copytree(studies / f"study{n % 3}", root / f"good{n}")
    (root / "bad").mkdir()
    shutil.copy(studies / "study0" / "sr.dcm", root / "bad" / "sr.dcm")
    out_dir = tmp_path / "out"
    pressed = []

    def press_ctrl_c():  # once the first study is written
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if any((p / "lesions.json").is_file() for p in out_dir.glob("good*")):
                pressed.append(time.monotonic())
                _thread.interrupt_main()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=press_ctrl_c, daemon=True)
    thread.start()
    rc = _cli("--studies", root, "--out", out_dir, "--cluster", "auto")
    thread.join()
    first = capsys.readouterr()
    assert pressed and rc == 130, first.err
    assert "cancelled" in first.err
    summary = json.loads((out_dir / "cluster-summary.json").read_text())
    assert summary["counts"]["cancelled"] >= 1
    done = sorted(p.name for p in out_dir.iterdir() if p.is_dir())
    assert 1 <= len(done) < 5 and _hidden(out_dir) == []
    for name in done:  # what is there is complete
        assert json.loads((out_dir / name / "lesions.json").read_text())["lesions"][0]["status"] == "ok"

    rc = _cli("--studies", root, "--out", out_dir, "--cluster", "auto")
    second = capsys.readouterr()
    assert rc == 1  # the bad study failed; the others are written
    for name in done:
        assert f"{name}: already done" in second.out
    assert "bad: FAILED" in second.err and "series" in second.err
    summary = json.loads((out_dir / "cluster-summary.json").read_text())
    assert summary["counts"] == {"ok": 5 - len(done), "failed": 1, "cancelled": 0}
    (bad,) = [r for r in summary["items"] if r["item"] == "bad"]
    assert bad["status"] == "failed" and "series" in bad["message"]
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == [f"good{n}" for n in range(5)]
    assert _hidden(out_dir) == []
