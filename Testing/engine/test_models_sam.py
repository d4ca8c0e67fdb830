"""SAM ViT-B/L/H, MedSAM and MedicoSAM: exact layouts, real containers, kind detection, one real forward pass.

The official weights cannot be downloaded, so checkpoints are synthetic with the released layouts
and containers (tiny files: one scalar per tensor, see medsamkit/models/synthetic.py). Loading
them strictly proves the real files load unchanged. A 1024×1024 ViT-B encoding costs 15-30 s on
2 CPU cores, so exactly one is run (MedSAM, module fixture); SAM's decoding reuses that embedding
(same ViT-B weights) through the cache, and ViT-L/H are checked on PyTorch's meta device (no memory).
"""
from __future__ import annotations

import argparse
import collections
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from medsamkit.errors import CheckpointError
from medsamkit.models import checkpoints, get_spec, load_model, synthetic
from medsamkit.models.base import PromptableModel
from medsamkit.predictor import Predictor

TSV_DIR = Path(__file__).resolve().parents[1] / "Data" / "checkpoints"


def read_tsv(name: str) -> list[tuple[str, tuple, str]]:
    """(key, shape, dtype) rows of a shared key-layout file, in state_dict order."""
    rows = []
    for line in (TSV_DIR / name).read_text(encoding="utf-8").splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = () if shape == "()" else tuple(int(d) for d in shape.split("x"))
        rows.append((key, dims, dtype))
    return rows


def layout_rows(state: dict) -> list[tuple[str, tuple, str]]:
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()]


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory) -> Path:
    """A tiny SAM ViT-B checkpoint with the released name and raw-state_dict container."""
    return synthetic.write_checkpoint("sam-vit-b", tmp_path_factory.mktemp("ckpt") / "sam_vit_b_01ec64.pth")


@pytest.fixture(scope="module")
def medsam_run(vit_b_file):
    """MedSAM loaded from the tiny file, one real 1024 encoding of a non-square slice, one box prediction."""
    torch.manual_seed(0)
    model = load_model("medsam", vit_b_file, device="cpu")
    image = (np.random.default_rng(0).random((300, 200)) * 1000.0).astype(np.float32)
    predictor = Predictor(model)
    with ThreadPoolExecutor(1) as worker:  # torch on the main thread was measured 2-4x slower under load
        worker.submit(predictor.set_image, image, normalization="percentile").result()
    prediction = predictor.predict(box=[20, 40, 150, 260])
    return model, predictor, image, prediction


@pytest.mark.parametrize("kind", ["sam-vit-b", "medsam", "medicosam"])
def test_vit_b_kinds_match_released_layout_key_by_key(kind):
    expected = read_tsv("sam_vit_b.keys.tsv")
    got = layout_rows(synthetic.reference_layout(kind))
    assert len(got) == len(expected) == 314
    assert got == expected  # names, shapes, dtypes and order


@pytest.mark.parametrize("kind,blocks,width,heads,global_blocks,encoder_params_m", [
    ("sam-vit-l", 24, 1024, 16, (5, 11, 17, 23), 308),   # SAM paper: ViT-L image encoder 308M parameters
    ("sam-vit-h", 32, 1280, 16, (7, 15, 23, 31), 636),   # SAM paper: ViT-H image encoder 636M parameters
])
def test_vit_l_h_layouts(kind, blocks, width, heads, global_blocks, encoder_params_m):
    state = synthetic.reference_layout(kind)  # meta device: shapes only
    vit_b = dict((k, s) for k, s, _ in read_tsv("sam_vit_b.keys.tsv"))
    assert len(state) == 3 + 14 * blocks + 6 + 17 + 120
    head_dim = width // heads
    assert tuple(state["image_encoder.pos_embed"].shape) == (1, 64, 64, width)
    for i in range(blocks):
        size = 127 if i in global_blocks else 27  # 2*64-1 global, 2*14-1 windowed
        assert tuple(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape) == (size, head_dim)
    assert tuple(state["image_encoder.neck.0.weight"].shape) == (256, width, 1, 1)
    # Prompt encoder and mask decoder are identical to ViT-B's in every SAM size.
    for key, value in state.items():
        if not key.startswith("image_encoder."):
            assert tuple(value.shape) == vit_b[key], key
    n_encoder = sum(v.numel() for k, v in state.items() if k.startswith("image_encoder."))
    assert abs(n_encoder / 1e6 - encoder_params_m) / encoder_params_m < 0.01


@pytest.mark.parametrize("kind", ["sam-vit-l", "sam-vit-h"])
def test_vit_l_h_released_container_loads_strictly(kind, tmp_path):
    path = synthetic.write_checkpoint(kind, tmp_path / f"{kind}.pth")
    assert path.stat().st_size < 400_000  # tiny file, full layout
    state = checkpoints.read_checkpoint(path)
    assert checkpoints.detect_kind(state, path) == kind
    checkpoints.check_layout(state, kind, str(path))
    with torch.device("meta"):
        net = get_spec(kind).build()
    net.load_state_dict(state, strict=True, assign=True)  # strict: every key and shape accepted
    with pytest.raises(CheckpointError, match=f"looks like a '{kind}'.*--model {kind}"):
        checkpoints.check_layout(state, "sam-vit-b", str(path))


@pytest.mark.parametrize("name,container,expected", [
    ("sam_vit_b_01ec64.pth", "release", "sam-vit-b"),
    ("medsam_vit_b.pth", "release", "medsam"),
    ("vit_b_medicosam.pt", "release", "medicosam"),
    ("vit_b_medical_imaging.pt", "release", "medicosam"),
    ("medsam_model_best.pth", "ddp", "medsam"),       # MedSAM multi-GPU training: {'model': {'module.' ...}, ...}
    ("best.pt", "torch_em", "sam-vit-b"),              # torch_em/micro-sam: {'model_state': {'sam.' ...}, ...}
])
def test_containers_unwrap_and_kind_is_detected(tmp_path, name, container, expected):
    layout = synthetic.reference_layout("sam-vit-b")
    path = tmp_path / name
    torch.save(synthetic.container("sam-vit-b", synthetic.tiny_state_dict(layout), container), path)
    state = checkpoints.read_checkpoint(path)
    assert list(state) == list(layout)  # wrapper removed, prefixes stripped, nothing lost
    assert checkpoints.detect_kind(state, path) == expected


def test_torch_em_medicosam_checkpoint_loads_through_registry(tmp_path):
    layout = synthetic.reference_layout("medicosam")
    tiny = synthetic.tiny_state_dict(layout, seed=3)
    path = tmp_path / "checkpoint.pt"
    obj = synthetic.container("medicosam", tiny, "torch_em")
    obj["model_state"] = collections.OrderedDict(("module." + k, v) for k, v in obj["model_state"].items())
    torch.save(obj, path)  # multi-GPU torch_em run: 'module.sam.' prefix
    model = load_model("medicosam", path, device="cpu")
    assert model.kind == "medicosam" and model.spec.multimask == "single-point"
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert torch.equal(model.net.state_dict()[key], tiny[key].contiguous())


def test_wrong_kind_is_refused_naming_the_kind_it_looks_like(vit_b_file, lite_model):
    with pytest.raises(CheckpointError, match=r"looks like a 'litemedsam'.*--model litemedsam"):
        load_model("sam-vit-b", lite_model.checkpoint, device="cpu")
    with pytest.raises(CheckpointError, match=r"SAM ViT-B.*sam-vit-b, medsam or medicosam"):
        load_model("litemedsam", vit_b_file, device="cpu")
    with pytest.raises(CheckpointError, match=r"SAM ViT-B.*sam-vit-b, medsam or medicosam"):
        load_model("sam-vit-h", vit_b_file, device="cpu")


def test_256_input_pos_embed_given_to_a_1024_model(tmp_path):
    """FT-SAM (SAM-Med2D's adapter-free 256 model) is recognised and refused with what to use instead."""
    layout = {k: v for k, v in synthetic.reference_layout("sam-med2d").items() if ".Adapter." not in k}
    path = tmp_path / "ft-sam.pth"
    torch.save(synthetic.tiny_state_dict(layout), path)
    for kind in ("sam-vit-b", "medsam", None):
        with pytest.raises(CheckpointError, match=r"256-input SAM ViT-B without adapters.*sam-med2d_b\.pth"):
            load_model(kind, path, device="cpu")


def test_broken_files_give_clear_errors(vit_b_file, tmp_path):
    data = vit_b_file.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated.*download it again"):
            checkpoints.read_checkpoint(tmp_path / "cut.pth")
    legacy = tmp_path / "legacy.pth"  # pre-1.6 torch format (not a zip file)
    torch.save(synthetic.tiny_state_dict(synthetic.reference_layout("sam-vit-b")), legacy,
               _use_new_zipfile_serialization=False)
    assert len(checkpoints.read_checkpoint(legacy)) == 314
    for cut in (40, legacy.stat().st_size - 10):
        (tmp_path / "cut_legacy.pth").write_bytes(legacy.read_bytes()[:cut])
        with pytest.raises(CheckpointError, match=r"truncated"):
            checkpoints.read_checkpoint(tmp_path / "cut_legacy.pth")
    (tmp_path / "image.pth").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        checkpoints.read_checkpoint(tmp_path / "image.pth")
    with pytest.raises(CheckpointError, match="empty"):
        (tmp_path / "empty.pth").write_bytes(b"")
        checkpoints.read_checkpoint(tmp_path / "empty.pth")


def test_safetensors_files_are_read_without_pickle(tmp_path):
    st = pytest.importorskip("safetensors.torch", reason="safetensors (medsamkit[train]) is not installed")
    save_file = st.save_file
    tensors = {"mask_decoder.iou_token.weight": torch.randn(1, 256), "module.x": torch.zeros(2)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    state = checkpoints.read_checkpoint(tmp_path / "w.safetensors")
    assert set(state) == set(tensors) and torch.equal(state["module.x"], tensors["module.x"])


def test_pickled_objects_outside_the_allow_list_are_refused(tmp_path):
    state = synthetic.tiny_state_dict(synthetic.reference_layout("sam-vit-b"))
    path = tmp_path / "with_args.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*never unpickles"):
        checkpoints.read_checkpoint(path)


def test_prefix_on_only_some_keys_names_the_offending_keys(tmp_path):
    state = synthetic.tiny_state_dict(synthetic.reference_layout("sam-vit-b"))
    state = collections.OrderedDict(("module." + k if k.startswith("mask_decoder.") else k, v)
                                    for k, v in state.items())
    path = tmp_path / "mixed.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Missing 120 keys.*Unexpected 120 keys, e\.g\. module\.mask_decoder"):
        load_model("sam-vit-b", path, device="cpu")


def test_medsam_forward_pass_and_preprocessing(medsam_run):
    model, predictor, image, prediction = medsam_run
    assert model.encoder_calls == 1
    assert predictor._embedding.shape == (1, 256, 64, 64)
    assert prediction.mask.shape == image.shape and prediction.low_res_logits.shape == (256, 256)
    assert np.isfinite(prediction.logits).all()
    # MedSAM: squash to 1024x1024 (no padding), min-max to [0, 1], no mean/std.
    rgb = np.repeat((np.arange(300 * 200).reshape(300, 200) % 251).astype(np.uint8)[:, :, None], 3, axis=2)
    x = model.transform.image_to_input(rgb)
    assert x.shape == (3, 1024, 1024)
    assert x.min() == 0.0 and x.max() == 1.0
    assert (x[:, -8:, :].std() > 0.1) and (x[:, :, -8:].std() > 0.1)  # content reaches every edge
    assert np.allclose(model.transform.box_to_input([20, 40, 150, 260], 300, 200),
                       [20 * 1024 / 200, 40 * 1024 / 300, 150 * 1024 / 200, 260 * 1024 / 300])


def test_sam_preprocessing_is_longest_side_imagenet_and_pad():
    tf = PromptableModel(get_spec("sam-vit-b"), None, "cpu").transform
    rgb = np.full((300, 200, 3), 200, dtype=np.uint8)
    x = tf.image_to_input(rgb)
    assert tf.resized_hw(300, 200) == (1024, 683)
    assert np.allclose(x[:, :1024, :683].mean(axis=(1, 2)), (200 - np.array([123.675, 116.28, 103.53]))
                       / np.array([58.395, 57.12, 57.375]), atol=1e-4)
    assert np.all(x[:, :, 683:] == 0.0)  # zero padding right of the content
    assert np.allclose(tf.coords_to_input([[100, 150]], 300, 200), [[100 * 683 / 200, 150 * 1024 / 300]])


def test_sam_decoding_multimask_policy_on_a_cached_embedding(medsam_run, vit_b_file):
    """SAM (same ViT-B weights as the MedSAM run): reuse its embedding instead of a second 1024 encode."""
    from medsamkit.embedding_cache import digest

    medsam, medsam_predictor, image, _ = medsam_run
    sam = PromptableModel(get_spec("sam-vit-b"), medsam.net, "cpu", checkpoint=str(vit_b_file))
    predictor = Predictor(sam)
    rgb = np.repeat(np.linspace(0, 255, 300 * 200).reshape(300, 200).astype(np.uint8)[:, :, None], 3, axis=2)
    predictor.cache.put((sam.model_id, digest(rgb)), medsam_predictor._embedding)
    predictor.set_display_image(rgb)
    assert sam.encoder_calls == 0  # served from the cache
    point = np.array([[60.0, 90.0]])
    one = predictor.predict(points=point, point_labels=[1])
    coords = sam.transform.coords_to_input(point, 300, 200)
    logits, iou = sam.decode(predictor._embedding, coords, np.array([1]), multimask=True)
    assert logits.shape == (3, 256, 256)
    assert one.score == pytest.approx(float(iou.max()), abs=1e-6)  # single point: best of 3 by predicted IoU
    single, _ = sam.decode(predictor._embedding, coords, np.array([1]), multimask=False)
    assert single.shape == (1, 256, 256)
    boxed = predictor.predict(points=point, point_labels=[1], box=[10, 10, 150, 250])
    two = predictor.predict(points=np.array([[60.0, 90.0], [120.0, 200.0]]), point_labels=[1, 0],
                            mask_input=one.low_res_logits)
    assert boxed.low_res_logits.shape == two.low_res_logits.shape == (256, 256)
    assert two.mask.shape == (300, 200)
