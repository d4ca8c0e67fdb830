"""Adapters for training: SAM-Med2D's own, or inserted into a MedSAM/SAM ViT encoder.

Wraps :mod:`medsamkit.models.adapters` (the model-family code owns the Adapter module and its
insertion; nothing is re-implemented here). The *layout* recorded in checkpoints and adapter
manifests says how to rebuild the same network before loading trained weights::

    {"style": "sam-med2d", "inserted": true|false, "mlp_ratio": 0.25, "blocks": 12}

``inserted: false`` — the base model already has adapters (the released SAM-Med2D); ``true`` —
they were added to a plain SAM ViT encoder (MedSAM, SAM, MedicoSAM) before training, with a
seeded initialisation, and must be added again when the adapter file is applied.

Note: SAM-Med2D's adapter is not zero-initialised (Kaiming weights and a LayerNorm output), so a
freshly inserted adapter changes the encoder's output until it is trained — the validation Dice
measured before training (epoch 0) shows the size of that change.
"""
from __future__ import annotations

from ..errors import InputError
from ..models.adapters import DEFAULT_MLP_RATIO, STYLE, ensure_adapter_layout  # noqa: F401  (the layout lives there)


def _adapters_module():
    try:
        from ..models import adapters
    except ImportError as exc:  # pragma: no cover - present since the model-family merge
        raise InputError("Adapter training needs medsamkit.models.adapters, which this installation lacks.") from exc
    return adapters


def prepare_adapters(model, mlp_ratio: float = DEFAULT_MLP_RATIO, seed: int = 0) -> dict:
    """Make sure ``model.net.image_encoder`` has adapters (insert them with a seeded init if not); return the layout.

    Raises InputError for encoders that cannot take SAM-Med2D adapters (LiteMedSAM's TinyViT).
    """
    import torch

    adapters = _adapters_module()
    encoder = model.net.image_encoder
    blocks = getattr(encoder, "blocks", None)
    if adapters.has_adapters(encoder):
        return {"style": STYLE, "inserted": False, "mlp_ratio": None, "blocks": len(blocks)}
    if blocks is None or not all(hasattr(b, "mlp") and hasattr(b, "norm2") for b in blocks):
        raise InputError(f"Model kind '{model.kind}' has no SAM ViT encoder blocks to put adapters into. Adapters work "
                         "with sam-vit-b/l/h, medsam, medicosam and sam-med2d; for LiteMedSAM use --parts decoder or full.")
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        adapters.insert_adapters(encoder, mlp_ratio=mlp_ratio)
    return {"style": STYLE, "inserted": True, "mlp_ratio": mlp_ratio, "blocks": len(blocks)}
