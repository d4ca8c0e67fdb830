"""The batch's ``--cases --cluster`` on the tests' local Ray: the same .seg.nrrd voxels and prompt records as the
plain batch, a failing case reported while the others are written, finished cases skipped on the next run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cluster_fixtures import ray_cluster  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("slicer", reason="slicer-core is not installed (the 'slicer' extra)")

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"


def _cases(folder: Path, out: Path) -> Path:
    from medsamkit.io import read_image

    label = read_image(CT_LABEL).array > 0
    cases = []
    for n, slices in enumerate([(10, 11, 12), (11,), (10, 12)]):
        boxes = {}
        for k in slices:
            ys, xs = np.nonzero(label[k])
            boxes[str(k)] = [int(xs.min()) - 3 - n, int(ys.min()) - 3, int(xs.max()) + 3, int(ys.max()) + 3 + n]
        (folder / f"boxes{n}.json").write_text(json.dumps({"axis": "axial", "boxes": boxes}))
        cases.append({"name": f"c{n}", "volume": str(CT), "boxes": f"boxes{n}.json", "out": str(out / f"c{n}.seg.nrrd"),
                      "window": "lung"})
    cases.append({"name": "broken", "volume": str(CT), "out": str(out / "broken.seg.nrrd")})  # no boxes, no markers
    (folder / "cases.json").write_text(json.dumps(cases))
    return folder / "cases.json"


def _record(path: Path) -> list:
    record = json.loads(Path(str(path) + ".prompts.json").read_text())
    return [(e["kind"], e["result"]["mask_sha256"], e["prompt"]["plan"]) for e in record["entries"]]


def test_batch_cases_on_cluster_equal_plain_batch(ray_cluster, tmp_path, capsys):
    from medsamkit.io import read_image
    from medsamkit.cli import batch
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = _cases(tmp_path / "a", tmp_path / "a" / "out")
    assert batch.main(["--cases", str(plain), "--quiet"]) == 1  # the broken case
    ours = _cases(tmp_path / "b", tmp_path / "b" / "out")
    assert batch.main(["--cases", str(ours), "--quiet", "--cluster", "auto"]) == 1
    out = capsys.readouterr()
    assert "broken FAILED" in out.err and "--boxes" in out.err
    summary = json.loads((tmp_path / "b" / "cluster-summary.json").read_text())
    assert summary["counts"] == {"ok": 3, "failed": 1, "cancelled": 0}
    for n in range(3):
        a, b = tmp_path / "a" / "out" / f"c{n}.seg.nrrd", tmp_path / "b" / "out" / f"c{n}.seg.nrrd"
        assert read_image(a).array.sum() > 100
        assert np.array_equal(read_image(a).array, read_image(b).array), n
        assert _record(a) == _record(b)
    assert not (tmp_path / "b" / "out" / "broken.seg.nrrd").exists()
    assert sorted(p.name for p in (tmp_path / "b" / "out").iterdir() if p.name.startswith(".")) == []
    before = (tmp_path / "b" / "out" / "c0.seg.nrrd").stat().st_mtime_ns
    assert batch.main(["--cases", str(ours), "--quiet", "--cluster", "auto"]) == 1  # resumes: only 'broken' runs
    again = capsys.readouterr()
    assert all(f"c{n}: already done" in again.out for n in range(3))
    assert (tmp_path / "b" / "out" / "c0.seg.nrrd").stat().st_mtime_ns == before
