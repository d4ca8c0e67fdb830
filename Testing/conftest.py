"""Shared pytest fixtures: one real LiteMedSAM model per test session, data locations.

Expensive things are built once per session (model load ≈ 3 s, each 256² encoding ≈ 1.5 s on the
2-core CI machine); tests share one embedding cache through the ``predictor`` fixture's model.
Data: ``Testing/Data`` (small copies with licences, always present) and the shared dev set
(``$MEDSAMKIT_DEV_DATA`` or ``../shared/data`` beside the checkout) for tests over many cases;
those skip with a visible reason when the dev set is absent.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=FutureWarning, module="timm")

# Exported fast-engine models (CLI default --engine auto) go to a per-run folder, never the user's cache.
if "MEDSAMKIT_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["MEDSAMKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="medsamkit-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MEDSAMKIT_CACHE_DIR"], True)

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "Testing" / "Data"
SAMPLE_DIR = REPO / "medsamkit" / "data"


def _dev_data_dir() -> Path | None:
    env = os.environ.get("MEDSAMKIT_DEV_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "manifest.json").is_file():
            return cand
    return None


DEV_DATA = _dev_data_dir()


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def test_manifest() -> dict:
    return json.loads((TEST_DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def dev_data() -> Path:
    if DEV_DATA is None:
        pytest.skip("shared dev set not found: set MEDSAMKIT_DEV_DATA to the folder holding manifest.json")
    return DEV_DATA


@pytest.fixture(scope="session")
def dev_manifest(dev_data) -> dict:
    return json.loads((dev_data / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def lite_model():
    """The real LiteMedSAM (bundled weights) on CPU, shared by the whole session."""
    import torch

    from medsamkit.models import load_model

    torch.manual_seed(0)
    return load_model("litemedsam", device="cpu", engine="torch")


@pytest.fixture()
def predictor(lite_model):
    """A fresh Predictor on the shared model (its own empty cache)."""
    from medsamkit.predictor import Predictor

    return Predictor(lite_model)


@pytest.fixture(scope="session")
def shared_predictor(lite_model):
    """One Predictor whose embedding cache is shared across tests (re-used slices are not re-encoded)."""
    from medsamkit.predictor import Predictor

    return Predictor(lite_model)


def load_2d_case(folder: Path, case: dict):
    """(image array, {label: bool mask}) of a 2D case in the shared-data format."""
    from PIL import Image

    img = np.array(Image.open(folder / case["image"]))
    lab = np.array(Image.open(folder / case["mask"]))
    return img, {int(v): lab == int(v) for v in case.get("labels_present", [1])}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def _in_cluster_tests(item) -> bool:
    return item is not None and Path(str(item.path)).resolve().parent == REPO / "Testing" / "cluster"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop Ray once the last cluster test has run: its idle workers and daemons would otherwise take CPU
    from every later test of the session (pytest runs the cluster test files one after another)."""
    import sys

    if _in_cluster_tests(item) and not _in_cluster_tests(nextitem):
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()

