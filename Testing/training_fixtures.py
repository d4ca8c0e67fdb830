"""Fixtures of the training tests: fresh copies of the real LiteMedSAM, a shared embedding cache, case lists,
a tiny random-init SAM. Imported by the test modules (``from training_fixtures import ...``) rather than
living in Testing/training/conftest.py, which would shadow Testing/conftest.py for ``from conftest import``.

Budget (CI, 2 cores): every distinct 256² LiteMedSAM encoding costs ≈1.5 s, so the decoder-tuning
tests share one cache of frozen-encoder embeddings (``train_cache``, keyed by the base weights'
SHA-256 + input digest) and use augment=none (flips would multiply the distinct inputs by 4).
"""
from __future__ import annotations

import copy
import json

import pytest



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
    manifest = json.loads((dev_data / "manifest.json").read_text(encoding="utf-8"))
    cases = sorted((c for c in manifest["cases"] if c["dataset"] == "jsrt"), key=lambda c: c["case_id"])[:5]
    if len(cases) < 5:
        pytest.skip("the dev set has fewer than 5 JSRT cases")
    return [(dev_data / c["image"], dev_data / c["mask"], c) for c in cases]


def build_tiny_sam(with_adapters: bool = False, seed: int = 0):
    """A small random-init SAM (segment-anything's own modules, 256 input, 16x16 tokens, 2 ViT blocks of width 48,
    32-wide prompt encoder/decoder) — the SAM-Med2D layout at toy scale, fast on CPU. Returns the nn.Module."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    encoder = ImageEncoderViT(img_size=256, patch_size=16, embed_dim=48, depth=2, num_heads=2, mlp_ratio=2.0,
                              out_chans=32, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                              use_rel_pos=True, global_attn_indexes=(1,), window_size=4)
    prompt = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=8)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=32,
                                                                                 mlp_dim=64, num_heads=2),
                          transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32)
    net = Sam(encoder, prompt, decoder, pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    if with_adapters:
        from medsamkit.models.adapters import insert_adapters

        insert_adapters(net.image_encoder)
    return net.eval()


@pytest.fixture()
def tiny_sam(tmp_path):
    """factory(with_adapters=False, seed=0) -> PromptableModel around a tiny SAM saved as a synthetic checkpoint
    (so it has a real file SHA-256), with SAM-Med2D's preprocessing (squash 256, ImageNet mean/std first)."""
    import torch

    from medsamkit.models.base import ModelSpec, PromptableModel
    from medsamkit.models.checkpoints import sha256_file
    from medsamkit.preprocess import TransformSpec

    def make(with_adapters: bool = False, seed: int = 0):
        net = build_tiny_sam(with_adapters, seed)
        path = tmp_path / f"tiny_sam_{int(with_adapters)}_{seed}.pth"
        if not path.exists():
            torch.save(net.state_dict(), path)
        spec = ModelSpec(kind="tiny-sam-med2d" if with_adapters else "tiny-sam", title="tiny SAM (tests)",
                         transform=TransformSpec(size=256, resize="squash", interpolation="nearest",
                                                 pixel_norm="imagenet", normalize_first=True),
                         build=lambda: build_tiny_sam(with_adapters, seed), multimask="always")
        return PromptableModel(spec, net, "cpu", checkpoint=str(path), checkpoint_sha256=sha256_file(path))

    return make
