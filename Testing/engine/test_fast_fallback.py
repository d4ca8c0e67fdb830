"""Engine choice and fallback, and the artifact cache's rules (no ONNX export needed here).

ONNX Runtime's absence is simulated by making its import fail (``sys.modules[name] = None``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medsamkit.errors import InputError


@pytest.fixture()
def no_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now raises ImportError


def test_auto_falls_back_to_torch_with_a_clear_message(lite_model, no_onnxruntime, shared_predictor):
    from medsamkit.fast.engine import FastPathUnavailable, with_engine

    with pytest.warns(FastPathUnavailable, match=r"pip install onnxruntime"):
        model = with_engine(lite_model, "auto")
    assert model is lite_model and model.engine == "torch"
    assert "ONNX Runtime is not installed" in model.fallback_reason
    with pytest.warns(FastPathUnavailable):
        assert with_engine(lite_model, "onnx") is lite_model


def test_registry_engine_option(no_onnxruntime, monkeypatch):
    from medsamkit.fast.engine import FastPathUnavailable
    from medsamkit.models import load_model

    with pytest.raises(InputError, match="Unknown engine 'tensorrt'"):
        load_model("litemedsam", device="cpu", engine="tensorrt")  # rejected before the slow load
    with pytest.warns(FastPathUnavailable):
        model = load_model("litemedsam", device="cpu", engine="onnx")
    assert type(model).__name__ == "PromptableModel" and model.engine == "torch"
    x = np.zeros((3, 256, 256), np.float32)
    assert tuple(model.encode(x).shape) == (1, 256, 64, 64)  # the fallback really runs


def test_auto_stays_on_torch_quietly_where_onnx_does_not_apply(lite_model, monkeypatch, recwarn):
    from medsamkit.fast.engine import with_engine

    monkeypatch.setattr(lite_model, "device", "cuda")
    assert with_engine(lite_model, "auto") is lite_model
    assert "CPU" in lite_model.fallback_reason
    assert not [w for w in recwarn if "engine" in str(w.message)]


def test_engine_names(monkeypatch):
    from medsamkit.fast.engine import resolve_engine, resolve_precision

    monkeypatch.delenv("MEDSAMKIT_ENGINE", raising=False)
    assert resolve_engine(None) == "auto"  # the same default as every command's --engine
    monkeypatch.setenv("MEDSAMKIT_ENGINE", "TORCH")
    assert resolve_engine(None) == "torch"
    assert resolve_engine("onnx") == "onnx"
    with pytest.raises(InputError, match="auto, torch, onnx"):
        resolve_engine("fast")
    with pytest.raises(InputError):
        resolve_precision("fp8")


def test_artifact_built_once_verified_and_rebuilt_when_damaged(tmp_path):
    from medsamkit.fast import artifacts

    key = artifacts.ArtifactKey("litemedsam", "ab" * 32, "encoder", "fp32")
    builds = []

    def build(path):
        builds.append(path)
        with open(path, "wb") as fh:
            fh.write(b"graph-bytes" * 1000)

    first = artifacts.ensure_artifact(key, build, tmp_path)
    second = artifacts.ensure_artifact(key, build, tmp_path)  # a second start: reused
    assert first == second and len(builds) == 1
    assert first.parent == tmp_path and key.checkpoint_sha256[:16] in first.name
    meta = json.loads(first.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["sha256"] == artifacts.sha256_file(first)

    first.write_bytes(b"graph-bytes" * 999)  # truncated by a crash / disk error
    again = artifacts.ensure_artifact(key, build, tmp_path)
    assert len(builds) == 2 and again.read_bytes() == b"graph-bytes" * 1000
    first.with_suffix(".json").write_text("{not json")
    artifacts.ensure_artifact(key, build, tmp_path)
    assert len(builds) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, first.with_suffix(".json").name])


def test_files_of_older_export_recipes_are_removed_when_the_new_one_is_written(tmp_path, monkeypatch):
    from medsamkit.fast import artifacts

    def build(path):
        Path(path).write_bytes(b"graph")

    monkeypatch.setattr(artifacts, "RECIPE_VERSION", 1)
    old = [artifacts.ensure_artifact(artifacts.ArtifactKey("litemedsam", "ab" * 32, c, "fp32"), build, tmp_path)
           for c in ("encoder", "decoder")]
    other = artifacts.ensure_artifact(artifacts.ArtifactKey("litemedsam", "cd" * 32, "encoder", "fp32"), build, tmp_path)
    (tmp_path / "notes-r1.txt").write_text("not ours")
    monkeypatch.setattr(artifacts, "RECIPE_VERSION", 2)
    new = artifacts.ensure_artifact(artifacts.ArtifactKey("litemedsam", "ab" * 32, "encoder", "fp32"), build, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    # the old encoder and the old single-graph decoder of these weights are gone, with their records;
    # other weights' files and files that are not ours stay
    assert names == sorted([new.name, new.with_suffix(".json").name, other.name, other.with_suffix(".json").name,
                            "notes-r1.txt"])
    assert all(not p.exists() for p in old)


def test_failed_build_leaves_nothing_and_other_weights_get_their_own_file(tmp_path):
    from medsamkit.fast import artifacts

    key = artifacts.ArtifactKey("litemedsam", "cd" * 32, "decoder", "fp32")

    def broken(path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        artifacts.ensure_artifact(key, broken, tmp_path)
    assert list(tmp_path.iterdir()) == []
    other = artifacts.ArtifactKey("litemedsam", "ef" * 32, "decoder", "fp32")
    assert key.stem != other.stem


def test_cache_dir_location(monkeypatch, tmp_path):
    from pathlib import Path

    import medsamkit
    from medsamkit.fast.artifacts import cache_dir

    monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MEDSAMKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "medsamkit"
    assert Path(medsamkit.__file__).parent not in cache_dir().parents  # never inside the package
