"""SAM-Med2D ViT-B: segment-anything's ViT-B at 256×256 input with an Adapter in every encoder block.

Architecture as built by SAM-Med2D (``sam_model_registry["vit_b"](args)`` with ``image_size=256``,
``encoder_adapter=True``): upstream segment-anything modules with a 16×16 token grid (pos_embed
1×16×16×768, global-attention rel_pos 31×64), a 256×16×16 image embedding, 64×64 low-res logits
and a 64×64 mask prompt; the adapters come from :mod:`medsamkit.models.adapters`. The released
``sam-med2d_b.pth`` is ``{'model': state_dict (386 keys), 'optimizer': <pickled Adam>}``; it is read
safely by :mod:`medsamkit.models.checkpoints`.

Recipe (``predictor_sammed.py``, ``DataLoader.py``): ImageNet mean/std on the original-resolution
0–255 image *first*, then a nearest-neighbour squash to 256×256 (no aspect ratio, no padding);
prompts scaled per axis; ``multimask=True`` with the best predicted IoU kept; logits bilinear
64 -> 256 -> (H, W), threshold 0. SAM-Med2D's *test* loader pads (instead of resizing) images
smaller than 256 on both sides; its predictor, which we follow, always resizes.
"""
from __future__ import annotations

from functools import partial

from ..errors import require
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, TransformSpec
from .base import ModelSpec

IMAGE_SIZE = 256
PATCH = 16
TRANSFORM = TransformSpec(size=IMAGE_SIZE, resize="squash", interpolation="nearest", pixel_norm="imagenet",
                          normalize_first=True)


def build():
    """Random-initialised SAM-Med2D ViT-B (adapters included); call ``.eval()`` after loading weights.

    Same hyper-parameters as segment-anything's ``build_sam_vit_b`` except ``img_size=256``
    (its ``_build_sam`` hard-codes 1024, so the modules are assembled here from its public classes).
    """
    import torch

    from .adapters import insert_adapters  # imports torch: only when a model is built, not when kinds are listed

    modeling = require("segment_anything.modeling", "The SAM-Med2D model")
    grid = IMAGE_SIZE // PATCH
    encoder = modeling.ImageEncoderViT(
        depth=12, embed_dim=768, img_size=IMAGE_SIZE, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=12, patch_size=PATCH, qkv_bias=True,
        use_rel_pos=True, global_attn_indexes=[2, 5, 8, 11], window_size=14, out_chans=256)
    insert_adapters(encoder)
    return modeling.Sam(
        image_encoder=encoder,
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=256, image_embedding_size=(grid, grid), input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=IMAGENET_MEAN.tolist(),
        pixel_std=IMAGENET_STD.tolist(),
    )


SPEC = ModelSpec(
    kind="sam-med2d",
    title="SAM-Med2D ViT-B with adapters (256 px)",
    transform=TRANSFORM,
    build=build,
    multimask="always",
)
