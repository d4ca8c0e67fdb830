"""Engine choice: ``torch`` (the reference), ``onnx`` (ONNX Runtime, CPU) or ``auto`` (fastest available).

:func:`with_engine` takes the torch :class:`~medsamkit.models.base.PromptableModel` that
``load_model`` built and returns the model to use: itself for ``torch``, or an
:class:`~.onnx_model.OnnxPromptableModel` (LiteMedSAM: the shipped graphs bound to the network's
weights; other layouts: exported graphs cached per checkpoint, :mod:`.artifacts`). ``load_model``
builds LiteMedSAM's ONNX model without torch at all when it can (:mod:`.torchfree`). When the fast path cannot be used the torch model is returned and the reason
is kept in ``model.fallback_reason``; a :class:`FastPathUnavailable` warning says what to do
whenever the user could have had it (ONNX Runtime missing, export failed, ``onnx`` asked for a
kind or device it does not serve). ``auto`` on a GPU stays on torch without a warning: the
ONNX engine here is a CPU engine.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from ..errors import InputError

ENGINES = ("auto", "torch", "onnx")
#: The one engine default of every face (CLI, batch, effect, server, load_model): the fastest available.
DEFAULT_ENGINE = "auto"
PRECISIONS = ("fp32", "int8")
#: Kinds whose ONNX export was validated (masks vs torch on the dev set, speed measured).
ONNX_KINDS = ("litemedsam",)
#: fp32 by default: identical masks. int8 is opt-in (MEDSAMKIT_ONNX_PRECISION=int8), see docs/fast-inference.md.
DEFAULT_PRECISION = "fp32"

log = logging.getLogger("medsamkit.fast")


class FastPathUnavailable(UserWarning):
    """The ONNX engine could not be used; the PyTorch engine runs instead (slower, same masks)."""


def resolve_engine(engine: str | None) -> str:
    """None -> ``$MEDSAMKIT_ENGINE`` or :data:`DEFAULT_ENGINE`; validates the name (InputError lists choices)."""
    name = (engine or os.environ.get("MEDSAMKIT_ENGINE") or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        raise InputError(f"Unknown engine '{engine}'. Choose one of: {', '.join(ENGINES)} "
                         "(auto = ONNX Runtime on the CPU when installed, else PyTorch).")
    return name


def resolve_precision(precision: str | None) -> str:
    name = (precision or os.environ.get("MEDSAMKIT_ONNX_PRECISION") or DEFAULT_PRECISION).strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"Unknown ONNX precision '{precision}'. Choose one of: {', '.join(PRECISIONS)}.")
    return name


def onnxruntime_available() -> tuple[bool, str]:
    """(available, reason). LiteMedSAM's graphs ship with medsamkit; other kinds are exported with ``onnx``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return False, (f"ONNX Runtime is not installed ({exc}); install it for 2-3x faster CPU inference with the same masks: "
                       "python -m pip install onnxruntime")
    return True, ""


def _fallback(model, reason: str, warn: bool):
    model.fallback_reason = reason
    model.engine = "torch"
    if warn:
        warnings.warn(f"Using the PyTorch engine: {reason}", FastPathUnavailable, stacklevel=3)
    else:
        log.info("Using the PyTorch engine: %s", reason)
    return model


def with_engine(model, engine: str | None = "auto", precision: str | None = None,
                cache_dir: "str | os.PathLike | None" = None, threads: int | None = None):
    """Return ``model`` (a torch PromptableModel) or its ONNX Runtime equivalent.

    engine: ``auto``/``torch``/``onnx`` (None = $MEDSAMKIT_ENGINE or DEFAULT_ENGINE, "auto"). precision: ``fp32``
    or ``int8`` (None = $MEDSAMKIT_ONNX_PRECISION or fp32). cache_dir: where exported graphs are
    kept (None = :func:`.artifacts.cache_dir`). threads: ORT intra-op threads (None = all cores).
    The first use of a checkpoint exports its graphs (~10 s on 2 cores); later starts load them.
    Never raises for an unavailable fast path: falls back to ``model`` (see module docstring).
    Raises InputError for unknown engine/precision names.
    """
    name = resolve_engine(engine)
    prec = resolve_precision(precision)
    if name == "torch":
        model.engine = "torch"
        model.fallback_reason = None
        return model
    explicit = name == "onnx"
    if model.kind not in ONNX_KINDS:
        return _fallback(model, f"the ONNX engine is validated for {', '.join(ONNX_KINDS)} only, not "
                                f"'{model.kind}'.", warn=explicit)
    if str(model.device) != "cpu":
        return _fallback(model, f"the ONNX engine runs on the CPU; the model is on '{model.device}' "
                                "(use --device cpu to use it).", warn=explicit)
    ok, reason = onnxruntime_available()
    if not ok:
        return _fallback(model, reason, warn=True)
    try:
        return build_onnx_model(model, prec, cache_dir=cache_dir, threads=threads)
    except Exception as exc:  # export/ORT failures must never stop segmentation: torch still works
        return _fallback(model, f"the ONNX export or ONNX Runtime failed ({type(exc).__name__}: {exc}). "
                                "Report this; use --engine torch to silence this message.", warn=True)


def build_onnx_model(model, precision: str = "fp32", cache_dir: "str | os.PathLike | None" = None,
                     threads: int | None = None, shipped: bool = True):
    """The ONNX Runtime model of ``model``; raises on failure.

    LiteMedSAM in fp32 (``shipped``): the graphs shipped with medsamkit bound to the network's weights,
    nothing exported. Otherwise (int8, another layout such as an adapter's, or shipped=False): the
    graphs are exported from the network once per checkpoint into the cache and loaded from there."""
    from . import onnx_export
    from .artifacts import ArtifactKey, ensure_artifact
    from .onnx_model import OnnxPromptableModel

    from ..errors import CheckpointError
    from . import graphs
    from .torchfree import KINDS, state_from_torch

    if shipped and model.kind in KINDS and precision == "fp32":  # the shipped graphs, bound to this network's weights
        state = state_from_torch(model.net)
        try:
            graphs.check_state(state)
        except CheckpointError:
            state = None  # another layout (an adapter's extra modules): export below
        if state is not None:
            parts = tuple(graphs.bind(c, state) for c in graphs.COMPONENTS)
            return OnnxPromptableModel(model.spec, parts, model.checkpoint, model.checkpoint_sha256,
                                       model.low_res_size, precision=precision, threads=threads, reference=model)
    if not model.checkpoint_sha256:
        raise InputError("The ONNX engine needs a model loaded from a checkpoint file (its hash keys the cache).")
    folder = Path(cache_dir) if cache_dir is not None else None
    sha = model.checkpoint_sha256
    size = model.transform.spec.size

    def key(component, prec):
        return ArtifactKey(model.kind, sha, component, prec)

    enc32 = ensure_artifact(key("encoder", "fp32"), lambda p: onnx_export.export_encoder(model.net, size, p),
                            folder, log.info)
    enc = enc32
    if precision == "int8":
        enc = ensure_artifact(key("encoder", "int8"), lambda p: onnx_export.quantize_int8(str(enc32), p),
                              folder, log.info)
    dec = [ensure_artifact(key(part, "fp32"), lambda p, part=part: onnx_export.export_decoder_part(model.net, part, p),
                           folder, log.info) for part in onnx_export.DECODER_PARTS]
    return OnnxPromptableModel(model.spec, (enc, *dec), model.checkpoint, model.checkpoint_sha256,
                               model.low_res_size, precision=precision, threads=threads, reference=model)
