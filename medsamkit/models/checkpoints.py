"""Reading checkpoint files safely and loading them strictly.

Single source of truth for: which containers are accepted (raw state_dict; ``{'model': ...}``,
``{'model_state': ...}``, ``{'state_dict': ...}`` wrappers), which key prefixes are stripped
(``module.``, ``sam.``, ``module.sam.`` — only when *every* key has them), how a model kind is
recognised from keys and shapes, and the wording of every loading error.

Design note: files are read with ``torch.load(weights_only=True)`` — never arbitrary unpickling,
since a checkpoint is user-supplied. The only globals allowed beyond torch's defaults are the ones
SAM-Med2D's released file needs (a pickled ``torch.optim.Adam`` object, ``defaultdict``, ``dict``).
A file needing anything else is refused with the list of globals it asks for. A ``.safetensors``
file (no code by design) is read with the safetensors package when it is installed.

Truncated downloads are the commonest broken file: a zip-format checkpoint whose end-of-central-
directory record is missing is reported as truncated *before* torch tries to read it (torch's own
errors for that case range from a miniz message to ``OSError: [Errno 22]`` under mmap).
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
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
# Kinds whose files share one key layout: they cannot refuse each other's files (told apart by name/hash only).
SAME_LAYOUT = {"medsam": "sam-vit-b", "medicosam": "sam-vit-b", "sam-vit-b": "sam-vit-b"}
# File-name hints for the shared ViT-B layout (released names: medsam_vit_b.pth, vit_b_medicosam.pt,
# micro-sam's registry name vit_b_medical_imaging). Checked in order: the first match wins.
_NAME_HINTS = (("medicosam", re.compile(r"medico[_-]?sam|medical[_-]?imaging", re.I)),
               ("medsam", re.compile(r"med[_-]?sam", re.I)))
FT_SAM_HINT = ("a 256-input SAM ViT-B without adapters (FT-SAM layout from the SAM-Med2D project), which medsamkit "
               "does not support; use the released SAM-Med2D file sam-med2d_b.pth (with adapters)")


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
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"Checkpoint file {path} is empty (0 bytes); copy or download it again.")
    fmt = _file_format(path)
    if fmt == "safetensors":
        return unwrap_state_dict(_read_safetensors(path), source=str(path))
    if fmt == "unknown":
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (its first bytes match neither the zip nor the legacy pickle format). "
            "Give the .pth/.pt weights file released by the model's authors.")
    if fmt == "zip" and not _zip_is_complete(path, size):
        raise CheckpointError(
            f"Checkpoint {path} is truncated ({size:,} bytes; the end of the file is missing). Copy or download it "
            "again and compare its size/sha256 with the published values.")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=fmt == "zip")
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, OSError, ... by case
        raise _explain_load_failure(path, exc) from exc
    return unwrap_state_dict(obj, source=str(path))


def _file_format(path: Path) -> str:
    """'zip' (torch >= 1.6), 'legacy' (pickle stream), 'safetensors', or 'unknown' — from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "legacy"  # pickle protocol 2..5 opcode: torch's legacy serialisation
    if len(head) >= 10 and head[8:10] == b'{"':
        return "safetensors"  # 8-byte little-endian header length, then a JSON header
    return "unknown"


def _zip_is_complete(path: Path, size: int) -> bool:
    """True if the file ends with a complete zip end-of-central-directory record.

    The record (signature PK\\x05\\x06, 22 bytes + a comment whose length is stored at offset 20)
    closes every zip file, so any cut at the end of a download removes or shortens it.
    """
    with open(path, "rb") as handle:
        start = max(0, size - 65_557)  # 22-byte record + at most 65,535 bytes of comment
        handle.seek(start)
        tail = handle.read()
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return False
    comment = int.from_bytes(tail[pos + 20:pos + 22], "little")
    return pos + 22 + comment == len(tail)


def _read_safetensors(path: Path) -> dict:
    from ..errors import require

    st = require("safetensors.torch", "Reading a .safetensors checkpoint", extra="train")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError on a truncated/damaged file
        raise CheckpointError(f"Cannot read safetensors file {path}: {str(exc)[:200]}. The file is truncated or "
                              "damaged; copy or download it again.") from exc


def _pickled_objects_error(path: Path, unsafe: list) -> CheckpointError:
    """The project's one refusal for checkpoints carrying pickled objects (zip or legacy format).

    It names what was found and what to do, and never repeats torch's advice to load with
    weights_only=False: that is exactly what would run a payload hidden in the file.
    """
    found = ", ".join(unsafe[:8]) if unsafe else "objects torch does not allow in a weights-only load"
    return CheckpointError(
        f"Refusing to load {path}: besides the weights it holds pickled Python objects ({found}), and loading "
        "those could run code from the file; medsamkit never unpickles them. Ask the provider for a weights-only "
        "file (.safetensors, or a plain state_dict of tensors), or, if you trust the file's source, convert it "
        "once in a separate throw-away environment and give medsamkit the converted weights file.")


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
        if not unsafe:  # torch lists them only for zip files; a legacy pickle names the first one in its error
            unsafe = [g for g in re.findall(r"GLOBAL ([\w.]+)", text) if g not in allowed][:1]
        if unsafe or _file_format(path) == "legacy" and "Weights only load failed" in text:
            return _pickled_objects_error(path, unsafe)
        if "truncated" in text or "EOF" in text:
            return CheckpointError(f"Checkpoint {path} is truncated or damaged ({text.splitlines()[0][:120]}). "
                                   "Copy or download it again and compare its size/sha256 with the published values.")
    if isinstance(exc, (EOFError, RuntimeError, OSError)) or "zip" in text.lower() or "unexpected" in text.lower():
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


def layout_of(state_dict: Mapping) -> str | None:
    """Key layout of a flat state_dict, from keys and shapes (never from values).

    Returns ``"litemedsam"``, ``"sam-med2d"`` (``.Adapter.`` keys), ``"ft-sam"`` (256-input ViT-B,
    no adapters), ``"sam-vit-b"`` / ``"sam-vit-l"`` / ``"sam-vit-h"`` (1024-input SAM layouts, shared
    by MedSAM and MedicoSAM for ViT-B), or ``None`` for an unknown layout.
    """
    keys = state_dict.keys()
    if any(".Adapter." in k for k in keys):
        return "sam-med2d"
    if any(k.startswith("image_encoder.layers.") for k in keys) and any("patch_embed.seq" in k for k in keys):
        return "litemedsam"
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is not None and pos.ndim == 4:
        if pos.shape[1] == 16:
            return "ft-sam"
        if pos.shape[1] == 64:
            return {768: "sam-vit-b", 1024: "sam-vit-l", 1280: "sam-vit-h"}.get(int(pos.shape[-1]))
    return None


def detect_kind(state_dict: Mapping, source: "str | os.PathLike | None" = None) -> str | None:
    """Model kind for a checkpoint whose kind the user did not give; ``None`` when unknown.

    SAM, MedSAM and MedicoSAM ViT-B share one layout, so for that layout the file name decides
    (``medsam_vit_b.pth`` -> medsam, ``vit_b_medicosam.pt`` -> medicosam), else ``sam-vit-b``.
    A renamed MedSAM file therefore needs ``--model medsam`` (its preprocessing differs from SAM's).
    Raises CheckpointError for a recognised but unsupported layout (FT-SAM).
    """
    layout = layout_of(state_dict)
    if layout == "ft-sam":
        raise CheckpointError(f"{source or 'The checkpoint'} holds {FT_SAM_HINT}.")
    if layout == "sam-vit-b" and source is not None:
        name = Path(source).name
        for kind, pattern in _NAME_HINTS:
            if pattern.search(name):
                return kind
    return layout


def _layout_text(layout: str | None) -> str:
    if layout == "ft-sam":
        return FT_SAM_HINT
    if layout == "sam-vit-b":
        return "a SAM ViT-B checkpoint (the layout of sam-vit-b, medsam and medicosam)"
    return f"a '{layout}' checkpoint"


def check_layout(state_dict: Mapping, kind: str, source: str = "checkpoint") -> None:
    """Refuse early (before building the network) a file whose layout belongs to another kind.

    Unknown layouts pass here; :func:`load_strict` then lists the offending keys. Raises
    CheckpointError naming the kind the file looks like and how to use it.
    """
    layout = layout_of(state_dict)
    if layout is None or layout == SAME_LAYOUT.get(kind, kind):
        return
    if layout == "ft-sam":
        hint = "."
    elif layout == "sam-vit-b":
        hint = "; load it with --model sam-vit-b, medsam or medicosam (whichever model it is)."
    else:
        hint = f"; load it with --model {layout}."
    raise CheckpointError(f"{source} is not a '{kind}' checkpoint: it looks like {_layout_text(layout)}{hint} "
                          f"Expected for '{kind}': {LAYOUT_HINTS.get(kind, kind)}.")


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
        looks = layout_of(state_dict)
        parts = [f"{source} does not fit model kind '{kind}'"]
        if looks and looks != SAME_LAYOUT.get(kind, kind):
            parts.append(f"; it looks like {_layout_text(looks)}")
            if looks != "ft-sam":
                parts.append(f" (try --model {looks})")
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


_HASH_CACHE: dict[tuple, str] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a file, hashed once per (path, size, modification time) in a process."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]
