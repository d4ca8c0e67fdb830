"""``medsamkit replay --cases CSV --cluster`` on the tests' local Ray: the records of the plain recist run replayed
voxel-identically (same model), a case that cannot be replayed reported while the others are written, and the
next run skipping the finished cases."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cluster_fixtures import local_recist, ray_cluster, studies  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("highdicom")


def test_replay_cases_on_cluster(ray_cluster, studies, local_recist, tmp_path, capsys):
    import SimpleITK as sitk

    from medsamkit.cli.commands import main

    rows = [{"name": n, "record": str(local_recist / n / "lesions.seg.nrrd"), "volume": str(studies / n / "series"),
             "out": f"out/{n}.seg.nrrd"} for n in ("study0", "study1", "study2")]
    rows.append({"name": "pair", "record": str(local_recist / "pair" / "lesions.seg.nrrd"),
                 "volume": str(studies / "pair.nii.gz"), "out": "out/pair.seg.nrrd"})
    rows.append({"name": "wrong-volume", "record": str(local_recist / "pair" / "lesions.seg.nrrd"),
                 "volume": str(studies / "study0" / "series"), "out": "out/wrong.seg.nrrd"})
    with open(tmp_path / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "record", "volume", "out"])
        writer.writeheader()
        writer.writerows(rows)
    argv = ["replay", "--cases", str(tmp_path / "cases.csv"), "--cluster", "auto", "--quiet"]
    assert main(argv) == 1
    out = capsys.readouterr()
    assert "wrong-volume: FAILED" in out.err and "shape" in out.err
    summary = json.loads((tmp_path / "cluster-summary.json").read_text())
    assert summary["counts"] == {"ok": 4, "failed": 1, "cancelled": 0}
    assert all(r["identical"] for r in summary["items"] if r["status"] == "ok")
    for row in rows[:4]:  # the replayed labels are the plain run's, voxel for voxel
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / row["out"])))
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(row["record"]))
        assert theirs.sum() > 100 and np.array_equal(ours > 0, theirs > 0), row["name"]
        assert Path(str(tmp_path / row["out"]) + ".prompts.json").is_file()
    assert not (tmp_path / "out" / "wrong.seg.nrrd").exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []
    assert main(argv) == 1  # resumed: only the failing case runs again
    again = capsys.readouterr()
    assert all(f"{r['name']}: already done" in again.out for r in rows[:4])
