"""The click model's training data: never a dev-set case, never a held-out case, every file traceable.

- the shipped provenance record of ``litemedsam-clicks`` lists every training case; none of them is
  in the development set (validation only) or in ``training-exclude.json`` (held-out evaluation), no
  dataset reserved whole is used, and for HC18 no image of an examination that holds such a case;
- ``tools/collect_click_data.py`` run on a small git repository in the source layout writes only
  allowed cases, with the source commit, blob ids, licence and the SHA-256 of every written file.

The id lists are copies of the shared data's ``training-exclude.json`` and the dev manifest's ids
(Testing/Data/click_training), so these tests run without the shared data.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
IDS = REPO / "Testing" / "Data" / "click_training"
sys.path.insert(0, str(REPO / "tools"))

import collect_click_data as ccd  # noqa: E402


@pytest.fixture(scope="module")
def forbidden():
    return ccd.forbidden_ids(IDS / "training-exclude.json", IDS / "dev-set-ids.json")


def test_id_lists_match_the_shared_data_when_present():
    shared = REPO.parent / "shared" / "data"
    if not (shared / "manifest.json").is_file():
        pytest.skip("shared dev data not present (the copies are used)")
    assert json.loads((shared / "training-exclude.json").read_text()) == json.loads(
        (IDS / "training-exclude.json").read_text())
    dev = json.loads((IDS / "dev-set-ids.json").read_text())["cases"]
    manifest = json.loads((shared / "manifest.json").read_text())["cases"]
    assert sorted((c["dataset"], c["case_id"]) for c in manifest) == sorted(
        (d, c) for d, ids in dev.items() for c in ids)


def test_shipped_model_was_trained_on_no_dev_or_excluded_case(forbidden):
    from medsamkit.models import litemedsam_clicks

    ids, reserved = forbidden
    prov = litemedsam_clicks.provenance()
    cases = prov["training_data"]["cases"]
    assert len(cases) == prov["training_data"]["images"] >= 50
    for case in cases:
        assert case["dataset"] not in reserved
        assert not ccd.is_forbidden(case["dataset"], case["case_id"], ids, reserved), case
        assert case["dataset"] in ccd.SOURCES and case["commit"] == ccd.SOURCES[case["dataset"]]["commit"]
    dev = json.loads((IDS / "dev-set-ids.json").read_text())["cases"]
    trained = {(c["dataset"], c["case_id"]) for c in cases}
    assert not trained & {(d, c) for d, v in dev.items() for c in v}
    hc18_exams = {ccd.hc18_exam(c) for c in dev["hc18"]}
    assert not {ccd.hc18_exam(c) for d, c in trained if d == "hc18"} & hc18_exams
    # licences: the record says which sources are research-only, and the weights inherit it
    research_only = {c["dataset"] for c in cases if not ccd.SOURCES[c["dataset"]]["permissive"]}
    assert research_only <= set(prov["licence"]["research_only_sources"])


def test_selection_skips_dev_excluded_and_same_examination(forbidden):
    ids, reserved = forbidden
    dev_hc18 = sorted(ids["hc18"])[0]                 # e.g. 043_HC
    exam = ccd.hc18_exam(dev_hc18)
    cases = {dev_hc18: [], f"{exam}_2HC": [], "998_HC": [], "998_2HC": [], "997_HC": []}
    chosen = ccd.select("hc18", cases, 10, 0, ids, reserved)
    assert exam not in {ccd.hc18_exam(c) for c in chosen}          # the whole examination is out
    assert sorted(ccd.hc18_exam(c) for c in chosen) == ["997", "998"]  # one image per examination
    kv = sorted(ids["kvasir"])[:3] + ["not-a-listed-case"]
    assert ccd.select("kvasir", {c: [] for c in kv}, 10, 0, ids, reserved) == ["not-a-listed-case"]
    assert ccd.is_forbidden("cvc_clinicdb", "anything", ids, reserved)


def _git(repo: Path, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG" if array.ndim == 3 else "PNG")
    return buf.getvalue()


def test_collect_writes_only_allowed_cases_with_provenance(tmp_path, forbidden):
    """A tiny Kvasir-layout repository: one dev case, one excluded case, two allowed ones."""
    ids, _ = forbidden
    work = tmp_path / "src"
    (work / "datasets" / "Kvasir-SEG" / "images").mkdir(parents=True)
    (work / "datasets" / "Kvasir-SEG" / "masks").mkdir(parents=True)
    dev_case = json.loads((IDS / "dev-set-ids.json").read_text())["cases"]["kvasir"][0]
    held_out = json.loads((IDS / "training-exclude.json").read_text())["cases"]["kvasir"][0]
    rng = np.random.default_rng(0)
    for name in (dev_case, held_out, "allowed1", "allowed2"):
        img = rng.integers(0, 255, (600, 700, 3), dtype=np.uint8)
        mask = np.zeros((600, 700, 3), dtype=np.uint8)
        mask[100:300, 200:420] = 255
        (work / "datasets" / "Kvasir-SEG" / "images" / f"{name}.jpg").write_bytes(_png(img))
        (work / "datasets" / "Kvasir-SEG" / "masks" / f"{name}.jpg").write_bytes(_png(mask))
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    commit = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    out = tmp_path / "out"
    summary = ccd.collect(out, {"kvasir": work / ".git"}, {"kvasir": 10}, IDS / "training-exclude.json",
                          IDS / "dev-set-ids.json", seed=1, commits={"kvasir": commit})
    names = sorted(r["case_id"] for r in summary["records"])
    assert names == ["allowed1", "allowed2"]
    assert dev_case in ids["kvasir"] and held_out in ids["kvasir"]
    recorded = json.loads((out / "sources.json").read_text())
    for rec in recorded["records"]:
        assert rec["commit"] == commit and rec["repository"] == ccd.SOURCES["kvasir"]["repository"]
        assert "research" in rec["licence"] and rec["permissive"] is False
        assert all(len(p["git_blob"]) == 40 for p in rec["source_paths"])
        for fname, sha in rec["files"].items():
            assert hashlib.sha256((out / fname).read_bytes()).hexdigest() == sha
    from PIL import Image

    img = Image.open(out / "kvasir_allowed1.img.png")
    mask = np.array(Image.open(out / "kvasir_allowed1.mask.png"))
    assert max(img.size) == 512 and mask.shape == (img.size[1], img.size[0])  # longest side 512, never upscaled
    assert set(np.unique(mask)) == {0, 1} and 0.08 < mask.mean() < 0.13     # 200x220 of 600x700 = 0.105
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["sources.json"] + [f"kvasir_allowed{i}.{r}.png" for i in (1, 2) for r in ("img", "mask")])
