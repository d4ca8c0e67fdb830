"""Reading checkpoint files safely and loading them strictly.

Single source of truth for: which containers are accepted (raw state_dict; ``{'model': ...}``,
``{'model_state': ...}``, ``{'state_dict': ...}`` wrappers), which key prefixes are stripped
(``module.``, ``sam.``, ``module.sam.`` — only when *every* key has them), how a model kind is
recognised from keys and shapes, and the wording of every loading error.

Design note: files are read with ``torch.load(weights_only=True)`` — never arbitrary unpickling,
since a checkpoint is user-supplied. The only globals allowed beyond torch's defaults are the ones
SAM-Med2D's released file needs (a pickled ``torch.optim.Adam`` object, ``defaultdict``, ``dict``).
A file needing anything else is refused with the list of globals it asks for.
"""
from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path
from typing import Mapping

from ..errors import CheckpointError

WRAPPER_KEYS = ("model", "model_state", "state_dict")
PREFIXES = ("module.sam.", "module.", "sam.")

# Kinds and the file layouts users know them by; used in error messages.
LAYOUT_HINTS = {
    "litemedsam": "a LiteMedSAM state_dict (435 keys, TinyViT 'image_encoder.layers.*', e.g. lite_medsam.pth)",
    "medsam": "a SAM ViT-B state_dict (314 keys, image_encoder.pos_embed 1x64x64x768, e.g. medsam_vit_b.pth)",
    "medicosam": "a SAM ViT-B state_dict (314 keys, e.g. vit_b_medicosam.pt)",
    "sam-vit-b": "a SAM ViT-B state_dict (314 keys, e.g. sam_vit_b_01ec64.pth)",
    "sam-vit-l": "a SAM ViT-L state_dict (e.g. sam_vit_l_0b3195.pth)",
    "sam-vit-h": "a SAM ViT-H state_dict (e.g. sam_vit_h_4b8939.pth)",
    "sam-med2d": "{'model': SAM-Med2D state_dict with 72 '.Adapter.' keys, 'optimizer': ...} (sam-med2d_b.pth)",
}


def sha256_file(path: "str | os.PathLike", chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _allowed_globals():
    import torch

    return [torch.optim.Adam, collections.defaultdict, dict]


def read_checkpoint(path: "str | os.PathLike") -> dict:
    """Load a checkpoint file into a flat ``{key: tensor}`` dict (CPU), unwrapping containers.

    Raises CheckpointError when the file is missing, unreadable, truncated, not a PyTorch file,
    needs unsafe unpickling, or holds no state_dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}. Check the path (--checkpoint).")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint file {path} is empty (0 bytes); copy or download it again.")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by case
        raise _explain_load_failure(path, exc) from exc
    return unwrap_state_dict(obj, source=str(path))


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _explain_load_failure(path: Path, exc: Exception) -> CheckpointError:
    import pickle

    import torch

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # the file may be too broken to list them
            unsafe = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _allowed_globals()}
        unsafe = [g for g in unsafe if g not in allowed]
        if unsafe or "Weights only load failed" in text:
            listed = ", ".join(unsafe[:8]) or "(could not be listed)"
            return CheckpointError(
                f"Refusing to load {path}: it contains pickled Python objects ({listed}) and loading them "
                "would run code from the file. Re-save only the weights, e.g. "
                "torch.save(torch.load(f, weights_only=False)['model'], 'weights.pth') in a Python session you "
                "trust, and use that file."
            )
    if isinstance(exc, (EOFError, RuntimeError)) or "zip" in text.lower() or "unexpected" in text.lower():
        return CheckpointError(
            f"Cannot read checkpoint {path}: the file is truncated or is not a PyTorch checkpoint ({text[:200]}). "
            "Copy or download it again and compare its size/sha256 with the published values."
        )
    return CheckpointError(f"Cannot read checkpoint {path}: {type(exc).__name__}: {text[:300]}")


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict:
    """Container -> flat state_dict with common prefixes stripped (only when every key has them)."""
    import torch

    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source} does not contain a model state_dict (found {type(obj).__name__}). Expected a dict of "
            "tensors, or a dict with one under 'model', 'model_state' or 'state_dict'."
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or not all(isinstance(k, str) for k in tensors):
        raise CheckpointError(f"{source} holds no named tensors; it is not a model state_dict.")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            break
    return dict(tensors)


def detect_kind(state_dict: Mapping) -> str | None:
    """Guess the model family from keys/shapes; ``None`` when it is not a known layout.

    SAM, MedSAM and MedicoSAM ViT-B share one layout; they are told apart only by file hash, so a
    1024-input ViT-B is reported as ``sam-vit-b`` unless the hash is known (see registry).
    """
    keys = state_dict.keys()
    if any(".Adapter." in k for k in keys):
        return "sam-med2d"
    if any(k.startswith("image_encoder.layers.") for k in keys) and any("patch_embed.seq" in k for k in keys):
        return "litemedsam"
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is not None and pos.ndim == 4:
        width = pos.shape[-1]
        if pos.shape[1] == 16:
            return "sam-med2d"  # FT-SAM style 256 input (without adapters the key check above fails)
        return {768: "sam-vit-b", 1024: "sam-vit-l", 1280: "sam-vit-h"}.get(width)
    return None


def load_strict(net, state_dict: Mapping, kind: str, source: str = "checkpoint") -> None:
    """``net.load_state_dict(state_dict, strict=True)`` with an error a user can act on.

    On any missing/unexpected key or shape mismatch nothing is loaded and CheckpointError names
    the kind, the first few offending keys, the kind the file looks like, and the expected layout.
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
                  for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        looks = detect_kind(state_dict)
        parts = [f"{source} does not fit model kind '{kind}'"]
        if looks and looks != kind:
            parts.append(f"; it looks like a '{looks}' checkpoint (try --model {looks})")
        parts.append(".")
        if missing:
            parts.append(f" Missing {len(missing)} keys, e.g. {', '.join(missing[:4])}.")
        if unexpected:
            parts.append(f" Unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:4])}.")
        if mismatched:
            parts.append(f" Shape mismatches: {'; '.join(mismatched[:3])}.")
        parts.append(f" Expected layout: {LAYOUT_HINTS.get(kind, kind)}.")
        raise CheckpointError("".join(parts))
    net.load_state_dict(state_dict, strict=True)
