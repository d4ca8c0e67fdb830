"""Trained weights as a file: ``adapter.safetensors`` + manifest, and applying it to a loaded model.

Single source of truth for the adapter file format (written by medsamkit.training) and for the loader behind
``load_model(..., adapter=PATH)`` and ``medsamkit segment --adapter FILE``.

Format: a safetensors file whose tensors are the trained state_dict entries, keyed exactly as in
the base network (``mask_decoder.*``, ``image_encoder.blocks.<i>.Adapter.*``, ...), and whose header
metadata ``medsamkit`` holds the JSON manifest::

    {"format": "medsamkit-adapter", "format_version": 1,
     "base": {"kind": "litemedsam", "checkpoint_sha256": "...", "checkpoint_name": "lite_medsam.pth"},
     "parts": ["decoder"], "adapter_layout": null | {"style": "sam-med2d", ...},
     "preprocessing": {"transform": {...}, "window": "auto", "normalizations": {...}},
     "prompt": {...}, "metrics": {"val_dice_before": ..., "val_dice": ..., "epoch": ..., "step": ...},
     "training": {...}, "medsamkit_version": "...", "created": "ISO time"}

The same manifest is written beside it as ``<name>.json`` for people and tools that do not read
safetensors; the loader trusts only the embedded copy.

Design note: an adapter is only meaningful on the exact weights it was trained on, so
:func:`apply_adapter` refuses another model kind always, and another base checkpoint (by SHA-256)
unless ``allow_other_base=True``. After applying, the model's ``checkpoint_sha256`` becomes a hash
of (base, adapter) so embedding caches never serve embeddings of the unadapted encoder.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

from ..errors import CheckpointError, InputError, require
from ..io import atomic_output

FORMAT = "medsamkit-adapter"
FORMAT_VERSION = 1
METADATA_KEY = "medsamkit"


def build_manifest(model, parts, adapter_layout=None, preprocessing=None, prompt=None, metrics=None,
                   training=None) -> dict:
    """The manifest of weights trained on ``model`` (a PromptableModel)."""
    from .. import __version__

    base_sha = getattr(model, "base_checkpoint_sha256", None) or model.checkpoint_sha256
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base": {"kind": model.kind, "checkpoint_sha256": base_sha,
                 "checkpoint_name": Path(model.checkpoint).name if model.checkpoint else None},
        "parts": list(parts),
        "adapter_layout": adapter_layout,
        "preprocessing": preprocessing or {},
        "prompt": prompt or {},
        "metrics": metrics or {},
        "training": training or {},
        "medsamkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_adapter(path: "str | os.PathLike", tensors: dict, manifest: dict) -> Path:
    """Write ``tensors`` ({key: CPU tensor}) + manifest atomically to ``path`` (.safetensors) and ``path``.json."""
    st = require("safetensors.torch", "Saving trained weights", extra="train")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"Adapter files end in .safetensors (got {path.name}).")
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    text = json.dumps(manifest, sort_keys=True)
    with atomic_output(path) as tmp:
        st.save_file(clean, tmp, metadata={METADATA_KEY: text})
    with atomic_output(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(path: "str | os.PathLike") -> dict:
    """The manifest of an adapter file (header only, no tensors read). CheckpointError when foreign/damaged."""
    return _open(path, with_tensors=False)[1]


def read_adapter(path: "str | os.PathLike") -> tuple[dict, dict]:
    """-> (tensors {key: CPU tensor}, manifest). CheckpointError for missing/foreign/damaged files."""
    return _open(path, with_tensors=True)


def _open(path, with_tensors: bool):
    st = require("safetensors", "Loading an adapter", extra="train")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Adapter file not found: {path}. Give the .safetensors file a training run wrote "
                              "(its run folder holds adapter.safetensors).")
    try:
        with st.safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
    except Exception as exc:  # safetensors raises SafetensorError / OSError by case
        raise CheckpointError(f"Cannot read adapter {path}: it is not a complete safetensors file ({str(exc)[:160]}). "
                              "Copy it again from the training run folder.") from exc
    try:
        manifest = json.loads(meta[METADATA_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is a safetensors file but not a medsamkit adapter (no '{METADATA_KEY}' "
                              "manifest in its header).") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a medsamkit adapter (format {manifest.get('format')!r}).")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer medsamkit (adapter format "
                              f"{manifest['format_version']}); update medsamkit.")
    return tensors, manifest


def check_base(model, manifest: dict, path, allow_other_base: bool = False) -> None:
    """Raise CheckpointError when ``model`` is not the base the adapter was trained on."""
    base = manifest.get("base", {})
    if base.get("kind") != model.kind:
        raise CheckpointError(
            f"Adapter {Path(path).name} was trained on model kind '{base.get('kind')}', but the loaded model is "
            f"'{model.kind}'. Load the base model it was made for: --model {base.get('kind')}"
            + (f" --checkpoint <{base['checkpoint_name']}>" if base.get("checkpoint_name") else "") + ".")
    have = getattr(model, "base_checkpoint_sha256", None) or model.checkpoint_sha256
    want = base.get("checkpoint_sha256")
    if want and have != want and not allow_other_base:
        raise CheckpointError(
            f"Adapter {Path(path).name} was trained on {base.get('checkpoint_name') or 'another checkpoint'} "
            f"(SHA-256 {want[:12]}...), but the loaded {model.kind} weights are different (SHA-256 "
            f"{(have or 'unknown')[:12]}...). Load the same base checkpoint it was trained on; weights made for one "
            "checkpoint give wrong masks on another.")


def apply_adapter(model, path: "str | os.PathLike", allow_other_base: bool = False) -> dict:
    """Load trained weights from ``path`` into ``model`` (a PromptableModel) in place; returns the manifest.

    Checks the base kind and checkpoint hash, inserts adapter layers when the file has them and the
    network does not, copies every tensor strictly (same key and shape), puts the net back in eval
    mode, and gives the model a new identity for embedding caches. Raises CheckpointError.
    """
    import torch

    if getattr(model, "adapter", None):
        raise CheckpointError("This model already has an adapter applied; load the base model again to use another.")
    tensors, manifest = read_adapter(path)
    check_base(model, manifest, path, allow_other_base)
    layout = manifest.get("adapter_layout")
    if layout:
        from .adapters import ensure_adapter_layout

        ensure_adapter_layout(model.net, layout)
    state = model.net.state_dict()
    missing = [k for k in tensors if k not in state]
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(state[k].shape)}" for k in tensors
             if k in state and tuple(tensors[k].shape) != tuple(state[k].shape)]
    if missing or wrong:
        raise CheckpointError(f"Adapter {Path(path).name} does not fit this {model.kind} network: "
                              + (f"unknown keys {', '.join(missing[:4])}; " if missing else "")
                              + (f"shape mismatches {'; '.join(wrong[:3])}; " if wrong else "")
                              + "it was made for another architecture.")
    with torch.no_grad():
        for k, v in tensors.items():
            state[k].copy_(v.to(dtype=state[k].dtype, device=state[k].device))
    model.net.eval()  # TinyViT rebuilds its attention-bias cache from the new weights here
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    base_sha = getattr(model, "base_checkpoint_sha256", None) or model.checkpoint_sha256
    model.base_checkpoint_sha256 = base_sha
    model.checkpoint_sha256 = hashlib.sha256(f"{base_sha}:{digest}".encode()).hexdigest()
    model.adapter = {"path": str(path), "sha256": digest, "manifest": manifest}
    return manifest
