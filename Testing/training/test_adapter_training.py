"""Adapter-only training on SAM-layout networks (tiny random-init SAM, synthetic checkpoint files):
only adapter weights move, the adapter file rebuilds and loads the adapters, wrong bases are refused.

Uses medsamkit.models.adapters (SAM-Med2D's Adapter, inserted by the model-family code). The
network is a toy (2 ViT blocks of width 48) so that a few steps cost well under a second each;
what is checked is which weights change and how the file round-trips, not segmentation quality.
"""
from __future__ import annotations

import pytest
import torch

from medsamkit.errors import CheckpointError, InputError
from medsamkit.predictor import Predictor
from medsamkit.models.adapter_file import apply_adapter, read_adapter
from medsamkit.training.config import TrainConfig
from medsamkit.training.trainer import Trainer
from training_fixtures import fresh_model, tiny_sam  # noqa: F401  (pytest fixtures)


def _cfg(test_data, out, **kw):
    base = dict(pairs=[[str(test_data / "JPCLN091.img.png"), str(test_data / "JPCLN091.mask.png")]], labels=[3, 4],
                epochs=2, batch_size=2, lr=1e-3, warmup=1, augment="flip", val_fraction=0, validate_before=False,
                prompt="mixed", clicks=2, out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def _changed(before: dict, after: dict) -> set:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_adapters_inserted_into_a_sam_encoder_train_alone(tiny_sam, test_data, tmp_path):
    model = tiny_sam(with_adapters=False)
    base_state = {k: v.clone() for k, v in model.net.state_dict().items()}
    result = Trainer(model, _cfg(test_data, tmp_path / "run", parts="adapters")).fit()
    assert result.status == "finished" and result.step == 2
    after = model.net.state_dict()
    adapter_keys = {k for k in after if ".Adapter." in k}
    assert len(adapter_keys) == 2 * 6 and not adapter_keys & set(base_state)  # 6 tensors per block, all new
    assert all(torch.equal(base_state[k], after[k]) for k in base_state)     # everything else bit-identical

    tensors, manifest = read_adapter(result.adapter)
    assert set(tensors) == adapter_keys
    assert manifest["adapter_layout"] == {"style": "sam-med2d", "inserted": True, "mlp_ratio": 0.25, "blocks": 2}
    # the adapters trained: they differ from a fresh seeded insertion
    fresh = tiny_sam(with_adapters=False)
    from medsamkit.training.adapter_layers import prepare_adapters

    prepare_adapters(fresh, seed=0)
    assert _changed({k: fresh.net.state_dict()[k] for k in adapter_keys}, {k: after[k] for k in adapter_keys})

    # applying the file to the plain base rebuilds the adapters and reproduces the trained network's output
    plain = tiny_sam(with_adapters=False)
    image = torch.rand(200, 240).numpy() * 1000
    box = [40, 30, 180, 150]
    p0 = Predictor(plain)
    p0.set_image(image, normalization="percentile")
    base_logits = p0.predict(box=box).logits
    apply_adapter(plain, result.adapter)
    p1, p2 = Predictor(plain), Predictor(model)
    for p in (p1, p2):
        p.set_image(image, normalization="percentile")
    tuned, trained = p1.predict(box=box).logits, p2.predict(box=box).logits
    assert abs(tuned - base_logits).max() > 1e-3
    assert abs(tuned - trained).max() < 1e-5


def test_sam_med2d_layout_trains_adapters_and_decoder_only(tiny_sam, test_data, tmp_path):
    model = tiny_sam(with_adapters=True)  # adapters are part of the base checkpoint, as in sam-med2d_b.pth
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    result = Trainer(model, _cfg(test_data, tmp_path / "run", parts="adapters+decoder", loss="focal-dice-iou")).fit()
    changed = _changed(before, model.net.state_dict())
    assert changed and all(".Adapter." in k or k.startswith("mask_decoder.") for k in changed)
    assert any(".Adapter." in k for k in changed) and any(k.startswith("mask_decoder.") for k in changed)
    tensors, manifest = read_adapter(result.adapter)
    assert manifest["adapter_layout"]["inserted"] is False and manifest["parts"] == ["adapters", "decoder"]
    other = tiny_sam(with_adapters=True)
    apply_adapter(other, result.adapter)
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in other.net.state_dict().items())
    with pytest.raises(CheckpointError, match="trained on model kind 'tiny-sam-med2d'"):
        apply_adapter(tiny_sam(with_adapters=False), result.adapter)


def test_adapter_on_a_different_base_checkpoint_is_refused(tiny_sam, test_data, tmp_path):
    model = tiny_sam(with_adapters=False, seed=0)
    result = Trainer(model, _cfg(test_data, tmp_path / "run", parts="adapters", epochs=1, clicks=0,
                                 prompt="box")).fit()
    with pytest.raises(CheckpointError, match="weights are different"):
        apply_adapter(tiny_sam(with_adapters=False, seed=1), result.adapter)


def test_adapters_need_a_vit_encoder(fresh_model, test_data, tmp_path):
    with pytest.raises(InputError, match="no SAM ViT encoder blocks"):
        Trainer(fresh_model(), _cfg(test_data, tmp_path / "run", parts="adapters"))
