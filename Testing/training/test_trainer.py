"""Decoder tuning of the real LiteMedSAM on CPU: it learns, only the decoder moves, resume is exact,
and the saved adapter loads into the predictor (and is refused on the wrong base model).

One overfit run is shared by the module (5 JSRT dev radiographs, both clavicles: the structures the
released LiteMedSAM segments worst, Dice ≈ 0.2–0.5 from a tight box). Embeddings of the frozen
encoder come from the session's ``train_cache``: 5 encodings in all.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medsamkit.errors import CheckpointError
from medsamkit.models.adapter_file import apply_adapter, read_adapter, save_adapter
from medsamkit.training.config import TrainConfig
from medsamkit.training.trainer import Trainer
from training_fixtures import fresh_model, jsrt_dev_cases, train_cache  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

CLAVICLES = [4, 5]


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def overfit(lite_model, jsrt_dev_cases, train_cache, tmp_path_factory):
    import copy

    from medsamkit.models.base import PromptableModel

    model = PromptableModel(lite_model.spec, copy.deepcopy(lite_model.net), "cpu", checkpoint=lite_model.checkpoint,
                            checkpoint_sha256=lite_model.checkpoint_sha256)
    out = tmp_path_factory.mktemp("overfit") / "run"
    cfg = TrainConfig(pairs=[[str(i), str(m)] for i, m, _ in jsrt_dev_cases], labels=CLAVICLES, parts="decoder",
                      epochs=5, batch_size=2, lr=3e-4, warmup=0.1, augment="none", box_jitter=10, val_fraction=0,
                      validate_before=False, patience=0, out=str(out))
    result = Trainer(model, cfg, embedding_cache=train_cache).fit()
    return model, cfg, result


def _case_dices(predictor, cases):
    from PIL import Image

    out = []
    for image, mask, case in cases:
        img, lab = np.array(Image.open(image)), np.array(Image.open(mask))
        predictor.set_image(img, normalization="auto", modality=case["modality"])
        for label in CLAVICLES:
            pred = predictor.predict(box=case["label_bboxes_xyxy"][str(label)])
            out.append(_dice(pred.mask, lab == label))
    return np.array(out)


def test_decoder_tuning_lowers_the_loss_and_raises_dice(overfit, shared_predictor, jsrt_dev_cases, lite_model):
    from medsamkit.predictor import Predictor

    model, cfg, result = overfit
    assert result.status == "finished" and result.step == 25  # 10 samples / batch 2 -> 5 steps x 5 epochs
    losses = np.array([loss for _, loss in result.losses])
    assert losses[-5:].mean() < 0.8 * losses[:5].mean()
    before = _case_dices(shared_predictor, jsrt_dev_cases)
    tuned = load_tuned(lite_model, result.adapter)
    # The encoder is frozen (checked below), so the base predictor's embeddings are valid for the tuned
    # model: copy them instead of encoding the 5 radiographs again (≈1.5 s each).
    predictor = Predictor(tuned)
    for (model_id, key), emb in list(shared_predictor.cache._items.items()):
        if model_id == lite_model.model_id:
            predictor.cache.put((tuned.model_id, key), emb)
    after = _case_dices(predictor, jsrt_dev_cases)
    assert tuned.encoder_calls == 0
    print(f"clavicle Dice before {before.round(3)} mean {before.mean():.3f}; after {after.round(3)} mean {after.mean():.3f}")
    assert after.mean() > before.mean() + 0.15
    assert (after > before).sum() >= 8


def load_tuned(lite_model, adapter):
    from medsamkit.models import load_model

    return load_model("litemedsam", lite_model.checkpoint, "cpu", engine="torch", adapter=adapter)


def test_frozen_parameters_stay_bit_identical(overfit, lite_model):
    model, _, _ = overfit
    base, tuned = lite_model.net.state_dict(), model.net.state_dict()
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all(k.startswith("mask_decoder.") for k in changed)
    assert len(changed) > 50  # most decoder tensors moved
    frozen = [k for k in base if not k.startswith("mask_decoder.")]
    assert all(torch.equal(base[k], tuned[k]) for k in frozen) and len(frozen) > 300


def test_adapter_file_loads_into_the_predictor(overfit, lite_model, shared_predictor, test_data, tmp_path):
    from PIL import Image

    from medsamkit.cli.commands import main
    from medsamkit.predictor import Predictor

    model, cfg, result = overfit
    tensors, manifest = read_adapter(result.adapter)
    assert set(tensors) == {k for k in model.net.state_dict() if k.startswith("mask_decoder.")}
    assert manifest["base"] == {"kind": "litemedsam", "checkpoint_sha256": lite_model.checkpoint_sha256,
                                "checkpoint_name": "lite_medsam.pth"}
    assert manifest["parts"] == ["decoder"] and manifest["metrics"]["step"] == 25
    tuned = load_tuned(lite_model, result.adapter)
    assert tuned.checkpoint_sha256 != lite_model.checkpoint_sha256 and tuned.model_id != lite_model.model_id
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in tuned.net.state_dict().items())
    # the CLI's --adapter gives the tuned model's mask, which differs from the base model's
    box = [150, 40, 250, 110]
    image = np.array(Image.open(test_data / "JPCLN091.img.png"))
    shared_predictor.set_image(image)  # the same pixels as the dev copy encoded above: a cache hit
    base_mask = shared_predictor.predict(box=box).mask
    args = ["segment", str(test_data / "JPCLN091.img.png"), "--box", *map(str, box), "--device", "cpu",
            "--engine", "torch", "--adapter", str(result.adapter), "--out", str(tmp_path / "tuned.png")]
    assert main(args) == 0
    tuned_mask = np.array(Image.open(tmp_path / "tuned.png")) > 0
    predictor = Predictor(tuned)
    predictor.set_image(image)
    assert np.array_equal(tuned_mask, predictor.predict(box=box).mask)
    assert (base_mask != tuned_mask).sum() > 100


def test_wrong_base_model_or_file_is_refused(overfit, fresh_model, tmp_path):
    import safetensors.torch as st

    _, _, result = overfit
    tensors, manifest = read_adapter(result.adapter)
    other = dict(manifest, base=dict(manifest["base"], checkpoint_sha256="0" * 64))
    save_adapter(tmp_path / "other.safetensors", tensors, other)
    with pytest.raises(CheckpointError, match="weights are different"):
        apply_adapter(fresh_model(), tmp_path / "other.safetensors")
    apply_adapter(fresh_model(), tmp_path / "other.safetensors", allow_other_base=True)  # explicit override works
    kind = dict(manifest, base=dict(manifest["base"], kind="medsam"))
    save_adapter(tmp_path / "kind.safetensors", tensors, kind)
    with pytest.raises(CheckpointError, match="trained on model kind 'medsam'.*--model medsam"):
        apply_adapter(fresh_model(), tmp_path / "kind.safetensors")
    st.save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a medsamkit adapter"):
        apply_adapter(fresh_model(), tmp_path / "plain.safetensors")
    data = result.adapter.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a complete safetensors"):
        apply_adapter(fresh_model(), tmp_path / "cut.safetensors")
    model = fresh_model()
    apply_adapter(model, result.adapter)
    with pytest.raises(CheckpointError, match="already has an adapter"):
        apply_adapter(model, result.adapter)


def test_resume_reproduces_the_uninterrupted_run(fresh_model, test_data, train_cache, tmp_path):
    """Stopped mid-epoch (inside gradient accumulation's schedule) at step 2 of 3 and resumed: the same last
    step and bit-identical weights."""
    pair = [[str(test_data / "JPCLN091.img.png"), str(test_data / "JPCLN091.mask.png")]]

    def cfg(out):  # 5 samples, batch 1, accumulation 2 -> 5 micro-batches = 3 optimizer steps (2+2+1)
        return TrainConfig(pairs=pair, parts="decoder", epochs=1, batch_size=1, accumulate=2, lr=3e-4, warmup=2,
                           augment="none", box_jitter=20, val_fraction=0, validate_before=False, out=str(out))

    full = fresh_model()
    res_full = Trainer(full, cfg(tmp_path / "a"), embedding_cache=train_cache).fit()
    assert res_full.step == 3

    first = fresh_model()
    flag = {"stop": False}

    def progress(step, total, text):
        flag["stop"] = step == 2

    res1 = Trainer(first, cfg(tmp_path / "b"), embedding_cache=train_cache, progress=progress,
                   cancel=lambda: flag["stop"]).fit()
    assert res1.status == "stopped" and res1.step == 2
    second = fresh_model()
    res2 = Trainer(second, cfg(tmp_path / "b"), embedding_cache=train_cache).fit(resume=True)
    assert res2.status == "finished" and res2.step == 3
    assert [s for s, _ in res2.losses] == [3]
    assert [loss for _, loss in res2.losses] == [loss for s, loss in res_full.losses if s > 2]
    a, b = full.net.state_dict(), second.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = fresh_model().net.state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a if k.startswith("mask_decoder."))  # it did train


def test_validation_dice_is_what_segmenting_the_image_files_gives(lite_model, jsrt_dev_cases, train_cache, tmp_path):
    """Validation runs through the backend every face uses: the Dice before training equals the Dice of
    segment_image on the original image files (their own window) with the same seeded prompts."""
    import copy

    from medsamkit.backend.local import LocalBackend
    from medsamkit.io import read_image
    from medsamkit.metrics import dice
    from medsamkit.models.base import PromptableModel
    from medsamkit.segment import segment_image
    from medsamkit.training.validation import VALIDATION_STREAM

    model = PromptableModel(lite_model.spec, copy.deepcopy(lite_model.net), "cpu", checkpoint=lite_model.checkpoint,
                            checkpoint_sha256=lite_model.checkpoint_sha256)
    cfg = TrainConfig(pairs=[[str(i), str(m)] for i, m, _ in jsrt_dev_cases], labels=CLAVICLES, parts="decoder",
                      epochs=1, max_steps=1, batch_size=2, augment="none", box_jitter=10, val_fraction=0.4,
                      validate_before=True, patience=0, out=str(tmp_path / "run"))
    trainer = Trainer(model, cfg, embedding_cache=train_cache)
    result = trainer.fit()
    data, refs = trainer.data, trainer.data.val_refs()
    assert len(refs) >= 2 and result.dice_before is not None
    independent = []
    with LocalBackend(lite_model) as backend:
        for i, ref in enumerate(refs):
            rng = np.random.default_rng([cfg.seed, VALIDATION_STREAM, 0, i])
            _, mask, prompt_mask = data.display_and_masks(ref)
            p = trainer.prompt(prompt_mask, rng)
            res = segment_image(backend, read_image(data.sources[ref.case].image), box=p.box, points=p.points, point_labels=p.labels,
                                normalization=data.norms[ref.case])
            independent.append(dice(res.slice_mask, mask))
    assert result.dice_before == pytest.approx(float(np.mean(independent)), abs=1e-9)
    assert 0.0 < result.dice_before < 0.9  # the released model's clavicles: far from perfect, not empty
