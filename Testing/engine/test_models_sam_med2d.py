"""SAM-Med2D: adapter maths and key layout, the released container with a pickled Adam, one real forward pass, CLI.

One network is built per module (~3 s, 271 M parameters) and loaded from a tiny synthetic
checkpoint in the released container (``{'model': sd, 'optimizer': <Adam object>}``), so loading,
preprocessing and a 256×256 forward pass (~1-6 s on 2 cores) are exercised exactly as the real
``sam-med2d_b.pth`` will be.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from medsamkit.errors import CheckpointError
import synthetic_checkpoints as synthetic
from medsamkit.models import checkpoints, get_spec, load_model
from medsamkit.models.adapters import ADAPTER_ATTR, Adapter, has_adapters, insert_adapters
from medsamkit.predictor import Predictor

TSV = Path(__file__).resolve().parents[1] / "Data" / "checkpoints" / "sam_med2d_b.keys.tsv"


@pytest.fixture(scope="module")
def med2d_file(tmp_path_factory) -> Path:
    return synthetic.write_checkpoint("sam-med2d", tmp_path_factory.mktemp("med2d") / "sam-med2d_b.pth")


@pytest.fixture(scope="module")
def med2d_model(med2d_file):
    torch.manual_seed(0)
    return load_model(None, med2d_file, device="cpu")  # kind recognised from the keys


def test_layout_matches_released_keys_shapes_dtypes_and_order():
    rows = [line.split("\t") for line in TSV.read_text(encoding="utf-8").splitlines()[1:]]
    state = synthetic.reference_layout("sam-med2d")
    got = [[k, "x".join(map(str, v.shape)) or "()", str(v.dtype).replace("torch.", "")] for k, v in state.items()]
    assert len(got) == 386 and sum(".Adapter." in k for k in state) == 72
    assert got == rows


def test_adapter_block_equals_sam_med2d_formula():
    """x + mlp(n) + Adapter(n), Adapter(n) = LN(n + spatial(n * channel(mean(n)))), written out independently."""
    from segment_anything.modeling.image_encoder import Block

    torch.manual_seed(1)
    block = Block(dim=64, num_heads=4, use_rel_pos=True, window_size=0, input_size=(8, 8),
                  norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6))
    encoder = torch.nn.Module()
    encoder.blocks = torch.nn.ModuleList([block])
    (adapter,) = insert_adapters(encoder)
    x = torch.randn(2, 8, 8, 64)
    with torch.no_grad():
        a = adapter
        h = x + block.attn(block.norm1(x))
        n = block.norm2(h)
        c = n.permute(0, 3, 1, 2)
        gate = torch.sigmoid(a.channel[2].weight @ torch.relu(a.channel[0].weight @ c.mean((2, 3)).T)).T
        s = torch.nn.functional.conv2d(c * gate[:, :, None, None], a.spatial[0].weight, stride=2, padding=1)
        s = torch.relu(torch.nn.functional.conv_transpose2d(torch.relu(s), a.spatial[2].weight, stride=2, padding=1))
        adapter_out = torch.nn.functional.layer_norm((c + s).permute(0, 2, 3, 1), (64,), a.norm.weight, a.norm.bias,
                                                     1e-5)
        expected = h + block.mlp.forward(n) + adapter_out  # .forward: the plain MLP, without the adapter hook
        assert torch.allclose(block(x), expected, atol=1e-5)
        assert (block(x) - (h + block.mlp.forward(n))).abs().mean() > 0.1  # the adapter branch contributes
    copied = copy.deepcopy(block)  # each copy stays wired to its own adapter
    with torch.no_grad():
        copied.Adapter.norm.bias.add_(1.0)
        assert torch.allclose(block(x), expected, atol=1e-5)
        assert torch.allclose(copied(x), expected + 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="already has adapters"):
        insert_adapters(encoder)
    assert has_adapters(encoder) and len([n for n, _ in encoder.named_parameters() if f".{ADAPTER_ATTR}." in f".{n}"]) == 6
    assert isinstance(adapter, Adapter)


def test_released_container_is_read_safely(med2d_file):
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(med2d_file))
    assert "torch.optim.adam.Adam" in unsafe  # the same pickled globals as the real file
    state = checkpoints.read_checkpoint(med2d_file)  # no weights_only=False anywhere
    assert len(state) == 386 and checkpoints.detect_kind(state, med2d_file) == "sam-med2d"


def test_forward_pass_with_every_prompt_type(med2d_model):
    model = med2d_model
    assert model.kind == "sam-med2d" and model.low_res_size == 64 and model.spec.multimask == "always"
    image = np.random.default_rng(2).integers(0, 255, (180, 300, 3), dtype=np.uint8)
    predictor = Predictor(model)
    predictor.set_image(image, normalization="none")
    assert predictor._embedding.shape == (1, 256, 16, 16)
    first = predictor.predict(box=[30, 20, 200, 150], points=[[100, 80], [40, 160]], point_labels=[1, 0])
    assert first.low_res_logits.shape == (64, 64) and first.mask.shape == (180, 300)
    again = predictor.predict(points=[[100, 80]], point_labels=[1], mask_input=first.low_res_logits)
    assert np.isfinite(again.logits).all() and model.encoder_calls == 1
    # Multimask "always": the kept mask is the candidate with the highest predicted IoU.
    tf = model.transform
    _, iou = model.decode(predictor._embedding, tf.coords_to_input([[100, 80]], 180, 300), np.array([1]),
                          mask_input=first.low_res_logits, multimask=True)
    assert again.score == pytest.approx(float(iou.max()), abs=1e-6)
    with pytest.raises(Exception, match=r"\(64, 64\)"):
        predictor.predict(box=[30, 20, 200, 150], mask_input=np.zeros((256, 256), np.float32))


def test_preprocessing_normalises_first_then_nearest_squash(med2d_model):
    import cv2

    rgb = np.random.default_rng(3).integers(0, 255, (100, 300, 3), dtype=np.uint8)
    x = med2d_model.transform.image_to_input(rgb)
    norm = (rgb.astype(np.float32) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    expected = cv2.resize(norm.astype(np.float32), (256, 256), interpolation=cv2.INTER_NEAREST).transpose(2, 0, 1)
    assert x.shape == (3, 256, 256) and np.allclose(x, expected, atol=1e-5)
    assert np.allclose(med2d_model.transform.box_to_input([30, 10, 150, 90], 100, 300),
                       [30 * 256 / 300, 10 * 256 / 100, 150 * 256 / 300, 90 * 256 / 100])


def test_wrong_and_damaged_sam_med2d_files(med2d_file, tmp_path):
    with pytest.raises(CheckpointError, match=r"looks like a 'sam-med2d'.*--model sam-med2d"):
        load_model("sam-vit-b", med2d_file, device="cpu")
    state = synthetic.tiny_state_dict(synthetic.reference_layout("sam-med2d"))
    missing = dict(state)
    del missing["image_encoder.blocks.7.Adapter.spatial.2.weight"]
    extra = dict(state, **{"image_encoder.blocks.0.Adapter.scale": torch.ones(1)})
    cases = (("missing.pth", missing, r"Missing 1 keys, e\.g\. image_encoder\.blocks\.7\.Adapter\.spatial\.2"),
             ("extra.pth", extra, r"Unexpected 1 keys, e\.g\. image_encoder\.blocks\.0\.Adapter\.scale"))
    for name, bad, text in cases:
        torch.save({"model": bad, "optimizer": torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])}, tmp_path / name)
        with pytest.raises(CheckpointError, match=text):
            checkpoints.load_strict(_meta_net(), checkpoints.read_checkpoint(tmp_path / name), "sam-med2d", name)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(med2d_file.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model("sam-med2d", cut, device="cpu")


def _meta_net():
    with torch.device("meta"):
        return get_spec("sam-med2d").build()


def test_cli_segment_with_sam_med2d_checkpoint(med2d_file, tmp_path, capsys):
    from PIL import Image

    from medsamkit.cli.commands import main

    image = tmp_path / "slice.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (120, 160), dtype=np.uint8)).save(image)
    out = tmp_path / "mask.png"
    rc = main(["segment", str(image), "--model", "sam-med2d", "--checkpoint", str(med2d_file), "--device", "cpu",
               "--box", "10", "10", "100", "90", "--point", "50", "40", "1", "--point", "90", "80", "0",
               "--out", str(out)])
    assert rc == 0 and "sam-med2d" in capsys.readouterr().out
    assert np.array(Image.open(out)).shape == (120, 160)
    rc = main(["segment", str(image), "--model", "sam-vit-x", "--box", "10", "10", "100", "90",
               "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "sam-vit-x" in err and "sam-med2d, medicosam" in err
    rc = main(["segment", str(image), "--model", "medsam", "--box", "10", "10", "100", "90",
               "--out", str(tmp_path / "y.png")])
    assert rc == 2 and "--checkpoint FILE" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
