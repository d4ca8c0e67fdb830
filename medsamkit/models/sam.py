"""SAM ViT-B/L/H, MedSAM ViT-B and MedicoSAM ViT-B: PyPI ``segment-anything`` networks, per-kind recipes.

All five kinds are stock segment-anything architectures at 1024×1024 input (embedding 256×64×64,
low-res logits 256×256), built with its public ``build_sam_vit_b/l/h``; they differ only in the
released weights and in how their authors preprocess and read out masks:

=============  ==========================================  =================  ==================
kind           input transform                             intensities        masks
=============  ==========================================  =================  ==================
sam-vit-b/l/h  longest side -> 1024 (bilinear), zero pad   ImageNet mean/std  3 candidates for a
                                                                              single point, else 1
medsam         squash to 1024×1024 (bicubic), no pad       min-max to [0, 1]  1 (box-trained)
medicosam      as SAM                                      as SAM             as SAM (micro-sam)
=============  ==========================================  =================  ==================

Sources (see the shared checkpoint notes): segment-anything ``SamPredictor`` +
``ResizeLongestSide`` (PIL bilinear; cv2 bilinear here, identical when enlarging, which is the
usual case for slices under 1024 px); MedSAM ``MedSAM_Inference.py`` (skimage order-3 resize, then
min-max, no mean/std); micro-sam ``segment_from_points`` for MedicoSAM. Registering this module
also registers SAM-Med2D (``sam_med2d.py``), so the registry only needs to import ``sam``.

segment-anything is imported lazily inside the builders, so the kinds stay listed (and a missing
package gives an install hint) without paying its import at start-up.
"""
from __future__ import annotations

from ..errors import require
from ..preprocess import TransformSpec
from .base import ModelSpec

SAM_TRANSFORM = TransformSpec(size=1024, resize="longest", interpolation="bilinear", pixel_norm="imagenet")
MEDSAM_TRANSFORM = TransformSpec(size=1024, resize="squash", interpolation="cubic", pixel_norm="minmax")

# segment-anything's builder per ViT size (public functions of segment_anything.build_sam).
_BUILDERS = {"b": "build_sam_vit_b", "l": "build_sam_vit_l", "h": "build_sam_vit_h"}


def build_sam(size: str = "b"):
    """Random-initialised SAM ViT-``size`` (b, l or h) at 1024 input from PyPI segment-anything.

    Returns ``segment_anything.modeling.Sam`` (call ``.eval()`` after loading weights). Raises
    DependencyError with the pip command when segment-anything is not installed.
    """
    module = require("segment_anything.build_sam", "SAM-family models (SAM, MedSAM, MedicoSAM)")
    return getattr(module, _BUILDERS[size])()


def _spec(kind: str, title: str, size: str, transform: TransformSpec, multimask: str) -> ModelSpec:
    return ModelSpec(kind=kind, title=title, transform=transform, build=lambda: build_sam(size),
                     multimask=multimask)


SPECS = (
    _spec("medsam", "MedSAM ViT-B (1024 px, box prompts)", "b", MEDSAM_TRANSFORM, "never"),
    _spec("sam-vit-b", "SAM ViT-B (1024 px)", "b", SAM_TRANSFORM, "single-point"),
    _spec("sam-vit-l", "SAM ViT-L (1024 px)", "l", SAM_TRANSFORM, "single-point"),
    _spec("sam-vit-h", "SAM ViT-H (1024 px)", "h", SAM_TRANSFORM, "single-point"),
    _spec("medicosam", "MedicoSAM ViT-B (1024 px)", "b", SAM_TRANSFORM, "single-point"),
)


def _register() -> None:
    from . import sam_med2d
    from .registry import register

    for spec in SPECS[:-1]:
        register(spec)
    register(sam_med2d.SPEC)  # listed in the order the docs use: ..., sam-vit-h, sam-med2d, medicosam
    register(SPECS[-1])


_register()
