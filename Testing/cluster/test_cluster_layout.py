"""Without Ray: the --studies folder layout (DICOM study folders and volume + lines pairs), the plain run never
importing Ray, a clear error for --cluster without Ray, and the removal of what killed tasks leave."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medsamkit.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def test_studies_folder_with_dicom_studies_and_volume_lines_pairs(tmp_path):
    from medsamkit.cli.recist import studies_in_folder

    (tmp_path / "study_a").mkdir()                       # a DICOM study
    (tmp_path / "ct1.nii.gz").write_bytes(b"x")          # a NIfTI + CSV pair
    (tmp_path / "ct1.lines.csv").write_text("lesion\n")
    (tmp_path / "ct2").mkdir()                           # a DICOM series folder + markups pair
    (tmp_path / "ct2.lines.mrk.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a study")
    (tmp_path / ".hidden").mkdir()
    items = studies_in_folder(tmp_path)
    assert [(a.name, b.name if b else None) for a, b in items] == [
        ("ct1.nii.gz", "ct1.lines.csv"), ("ct2", "ct2.lines.mrk.json"), ("study_a", None)]
    (tmp_path / "ct3.lines.csv").write_text("lesion\n")  # a lines file without its volume
    with pytest.raises(InputError, match=r"ct3.lines.csv needs exactly one volume named ct3.nii.gz"):
        studies_in_folder(tmp_path)


def test_study_names_of_pairs_in_a_list_file(tmp_path):
    from argparse import Namespace

    from medsamkit.cli.recist import study_list

    (tmp_path / "list.txt").write_text("vols/ct1.nii.gz,lines/ct1.lines.csv\nstudies/s1\nstudies/s2,s2/sr.dcm\n")
    args = Namespace(volume=None, lines=None, space=None, study=None, sr=None, studies=str(tmp_path / "list.txt"))
    assert [n for _, _, n in study_list(args)] == ["ct1", "s1", "s2"]


def test_plain_run_never_imports_ray(tmp_path):
    code = ("import sys\nfrom medsamkit.cli.commands import main\n"
            f"rc = main(['recist', '--studies', {str(tmp_path / 'none')!r}, '--out', {str(tmp_path / 'o')!r}])\n"
            "assert rc == 2, rc\nassert 'ray' not in sys.modules, 'ray imported'\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_cluster_without_ray_is_one_clear_error(monkeypatch):
    from medsamkit.cluster import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InputError, match=r"pip install 'medsamkit\[cluster\]'"):
        require_ray()


def test_remove_partials_of_killed_tasks_only(tmp_path):
    from medsamkit.cluster.summary import remove_partials

    left = [tmp_path / ".s1.ab12_x9q.partial", tmp_path / ".c0.seg.nrrd.4711-k2j3.partial.seg.nrrd",
            tmp_path / ".s1.zz9.old"]
    kept = [tmp_path / "s1", tmp_path / ".s10.ab12_x9q.partial", tmp_path / ".other.ab1.partial"]
    for p in left[:1] + left[2:] + kept[:1] + kept[1:]:
        p.mkdir()
    left[1].write_bytes(b"half")
    removed = remove_partials(tmp_path, ["s1", "c0.seg.nrrd"])
    assert sorted(removed) == sorted(left)
    assert all(not p.exists() for p in left) and all(p.exists() for p in kept)


def test_gpus_per_task_follows_device_and_cluster():
    from argparse import Namespace

    from medsamkit.cluster.runner import gpus_per_task

    class FakeRay:
        def __init__(self, gpus):
            self.gpus = gpus

        def cluster_resources(self):
            return {"CPU": 16.0, "GPU": float(self.gpus)}

    def args(**kw):
        return Namespace(**{"cluster_gpus": None, "device": "auto", "backend": "local", **kw})

    assert gpus_per_task(FakeRay(4), args()) == 1.0                       # CUDA workers get a GPU each
    assert gpus_per_task(FakeRay(4), args(device="cuda:0")) == 1.0
    assert gpus_per_task(FakeRay(0), args()) == 0.0                       # a CPU cluster
    assert gpus_per_task(FakeRay(4), args(device="cpu")) == 0.0
    assert gpus_per_task(FakeRay(4), args(backend="http://gpu:8765")) == 0.0  # the model runs on a server
    assert gpus_per_task(FakeRay(4), args(cluster_gpus=0.5)) == 0.5       # two tasks per GPU


def test_replay_usage_errors_exit_2(tmp_path, capsys):
    from medsamkit.cli.commands import main

    (tmp_path / "cases.csv").write_text("record,volume\nr.seg.nrrd,ct.nii.gz\n")
    assert main(["replay"]) == 2
    assert "--cases" in capsys.readouterr().err
    assert main(["replay", "r.seg.nrrd", "--volume", "ct.nii.gz", "--out", "o.seg.nrrd", "--cluster", "auto"]) == 2
    assert "--cases" in capsys.readouterr().err
    assert main(["replay", "--cases", str(tmp_path / "cases.csv"), "--volume", "ct.nii.gz"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["replay", "--cases", str(tmp_path / "cases.csv")]) == 2  # no 'out' column
    assert "record,volume,out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "cases.csv"]
