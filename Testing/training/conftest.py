"""Fixtures of the training tests: fresh copies of the real LiteMedSAM, a shared embedding cache, case lists.

Budget (CI, 2 cores): every distinct 256² LiteMedSAM encoding costs ≈1.5 s, so the decoder-tuning
tests share one cache of frozen-encoder embeddings (``train_cache``, keyed by the base weights'
SHA-256 + input digest) and use augment=none (flips would multiply the distinct inputs by 4).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def train_cache():
    from medsamkit.embedding_cache import EmbeddingCache

    return EmbeddingCache(512 << 20)


@pytest.fixture()
def fresh_model(lite_model):
    """A trainable copy of the session's real LiteMedSAM (same weights and checkpoint hash, its own net)."""
    from medsamkit.models.base import PromptableModel

    def make():
        return PromptableModel(lite_model.spec, copy.deepcopy(lite_model.net), "cpu",
                               checkpoint=lite_model.checkpoint, checkpoint_sha256=lite_model.checkpoint_sha256)

    return make


@pytest.fixture(scope="session")
def jsrt_dev_cases(dev_data):
    """The first 5 JSRT chest radiographs of the dev set (sorted ids): [(image path, mask path, case dict)]."""
    manifest = json.loads((dev_data / "manifest.json").read_text())
    cases = sorted((c for c in manifest["cases"] if c["dataset"] == "jsrt"), key=lambda c: c["case_id"])[:5]
    if len(cases) < 5:
        pytest.skip("the dev set has fewer than 5 JSRT cases")
    return [(dev_data / c["image"], dev_data / c["mask"], c) for c in cases]
