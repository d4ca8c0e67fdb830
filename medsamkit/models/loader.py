"""Loading a model: ``load_model`` is the only way the rest of medsamkit obtains a network.

It reads the checkpoint safely, recognises the kind when none is given (:mod:`.registry`), loads strictly
and puts the network in eval mode *after* loading (TinyViT builds its attention-bias cache in ``.eval()``;
calling it before loading leaves stale biases), and picks the engine: LiteMedSAM on the CPU runs torch-free
(:mod:`medsamkit.fast.torchfree`), a catalog model without a file is downloaded first (:mod:`.download`).
"""
from __future__ import annotations

import os
import threading

from ..errors import CheckpointError, InputError
from . import checkpoints
from .base import PromptableModel
from . import registry
from .registry import get_spec, known_kind, post_load_of

_LOCK = threading.Lock()  # builders are not re-entrant in some upstream code (global RNG use)


def choose_device(preference: str | None = None) -> str:
    """'auto'/None -> cuda, then mps, then cpu. An explicit choice that is unavailable is an error."""
    import torch

    pref = (preference or os.environ.get("MEDSAMKIT_DEVICE") or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("Device 'cuda' was requested but PyTorch sees no CUDA GPU; use --device cpu or auto.")
    if pref == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("Device 'mps' was requested but is not available; use --device cpu or auto.")
    if not (pref == "cpu" or pref == "mps" or pref.startswith("cuda")):
        raise InputError(f"Unknown device '{preference}'. Use auto, cpu, cuda, cuda:N or mps.")
    return pref


def load_model(kind: str | None = None, checkpoint: str | os.PathLike | None = None,
               device: str | None = None, engine: str | None = None,
               adapter: str | os.PathLike | None = None) -> PromptableModel:
    """Build and load a model.

    kind: a registered kind, or None to recognise it from the checkpoint (default LiteMedSAM with
    its bundled weights when both are None). checkpoint: a file path, or None for the kind's
    default weights. engine: "torch" (the reference), "onnx" (ONNX Runtime on the CPU: for LiteMedSAM the
    shipped graphs bound to the weights without torch, see medsamkit.fast.torchfree; other kinds are
    exported once per checkpoint into the user cache) or "auto" (fastest available, decided without
    importing torch on a machine without a GPU); None = $MEDSAMKIT_ENGINE or
    "auto" (fast.engine.DEFAULT_ENGINE, the same default as every command); training and code that
    needs the network itself pass engine="torch". A non-torch engine returns an object with
    PromptableModel's interface (see medsamkit.fast), or this torch model with a warning when the
    fast path is unavailable.
    adapter: an ``adapter.safetensors`` written by ``medsamkit train``, applied on top before any
    engine export (checked against the base kind and checkpoint hash; it changes checkpoint_sha256,
    so exported fast models and cached embeddings are keyed by the adapted weights).
    Raises CheckpointError / InputError with a remedy, DependencyError naming ``medsamkit[torch]`` when
    the request needs PyTorch and it is not installed; nothing half-loaded escapes.
    """
    from ..fast.engine import resolve_engine, with_engine  # light: onnxruntime is imported only when used

    engine_name = resolve_engine(engine)  # an unknown engine name fails before the slow load
    if kind is not None:
        get_spec(kind)  # an unknown kind fails first too
    from ..fast import torchfree

    if torchfree.use_torchfree(kind, engine_name, device, adapter):
        from ..fast.engine import resolve_precision

        if kind is None and checkpoint is not None and not torchfree.installed("torch"):
            kind = "litemedsam"  # the one kind readable without torch; a foreign file fails its layout check
        if kind is not None or checkpoint is None or known_kind(checkpoints.file_sha256(os.fspath(checkpoint))):
            return torchfree.load_litemedsam(kind, checkpoint, precision=resolve_precision(None))
    torchfree.require_torch(f"Model kind '{kind or 'auto-detected'}' with engine '{engine_name}', device "
                            f"'{device or 'auto'}'{' and an adapter' if adapter is not None else ''}")
    if checkpoint is None:
        spec = get_spec(kind or "litemedsam")
        if spec.default_checkpoint is None:  # the authors' file from the catalog: cached, or downloaded now
            from .download import checkpoint_for

            checkpoint = checkpoint_for(spec.kind)
        else:
            checkpoint = spec.default_checkpoint()
    path = os.fspath(checkpoint)
    state = checkpoints.read_checkpoint(path)
    sha = checkpoints.file_sha256(path)
    if kind is None:
        kind = known_kind(sha) or checkpoints.detect_kind(state, path)
        if kind is None:
            raise CheckpointError(
                f"Cannot tell which model {path} holds: its keys match no known layout "
                f"(first keys: {', '.join(list(state)[:4])}). Pass --model KIND, one of {', '.join(registry.MODEL_KINDS)}.")
    spec = get_spec(kind)
    checkpoints.check_layout(state, spec.kind, source=str(path))  # refuse another kind's file before building
    with _LOCK:  # builders are not re-entrant in some upstream code (global RNG use)
        net = spec.build()
    checkpoints.load_strict(net, state, spec.kind, source=str(path))
    del state
    dev = choose_device(device)
    net.to(dev)
    net.eval()  # after loading and moving: TinyViT builds its attention-bias cache here
    model = PromptableModel(spec, net, dev, checkpoint=path, checkpoint_sha256=sha)
    post_load = post_load_of(spec.kind)
    if post_load is not None:
        post_load(model)
    if adapter is not None:
        from .adapter_file import apply_adapter

        apply_adapter(model, adapter)
    return model if engine_name == "torch" else with_engine(model, engine_name)
