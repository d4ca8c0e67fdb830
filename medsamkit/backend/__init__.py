"""Backends: one interface (base.Backend), run locally (local.py) or on a server (remote.py).

``open_backend(spec, ...)`` is the one constructor every face uses (CLI, batch, the Slicer effect's
model process, bench, server), with one rule set::

    backend = open_backend("local")                                   # LiteMedSAM, --engine auto
    backend = open_backend("local", model="medsam", checkpoint="medsam_vit_b.pth", device="cuda")
    backend = open_backend("http://gpu-box:8765", token_file="token.txt")   # a medsamkit server
    backend.set_volume(volume, normalization="lung")
    mask = backend.predict(box=[x0, y0, x1, y1], slice_index=k, axis=0).mask

Rules:

- ``"local"`` (or None/""): the model is loaded here with :func:`medsamkit.models.load_model` and the
  same defaults as everywhere (kind LiteMedSAM, bundled weights, ``engine="auto"``, ``device="auto"``).
  An already loaded model (``model=`` a PromptableModel) is used as is.
- ``"process"``: the same model in a model process this backend starts (``medsamkit serve`` on a
  loopback port, :class:`~medsamkit.backend.process.ProcessBackend`): what "local" means in the Slicer
  effect, whose process never imports torch and survives a crash of the model.
- ``"http://host:port"``: a :class:`~medsamkit.backend.remote.RemoteBackend`. The server's model is
  used, so a model, checkpoint or adapter other than the defaults is refused with one message
  (start the server with them instead) rather than silently ignored.
"""
from __future__ import annotations

import os

from .base import Backend, BackendInfo, ImageInfo

__all__ = ["Backend", "BackendInfo", "ImageInfo", "open_backend", "is_remote_spec", "load_local_model", "describe"]

DEFAULT_KIND = "litemedsam"


def is_remote_spec(spec: "str | None") -> bool:
    """True for a server address (``http://host:port``, ``https://...``)."""
    return bool(spec) and str(spec).lower().startswith(("http://", "https://"))


def open_backend(spec: "str | None" = "local", model=None, checkpoint: "str | os.PathLike | None" = None,
                 adapter: "str | os.PathLike | None" = None, engine: str | None = None, device: str | None = None,
                 token_file: "str | os.PathLike | None" = None, timeout: float | None = None,
                 **options) -> Backend:
    """The backend for ``spec``: ``"local"``/None (in this process), ``"process"`` (a model process) or a server URL.

    model: a model kind ("litemedsam", "medsam", ...; None = recognised from ``checkpoint``, else
    LiteMedSAM) or a loaded PromptableModel. checkpoint/adapter/engine/device: as
    :func:`medsamkit.models.load_model` (engine None = "auto"). token_file/timeout: for a server
    (token also from $MEDSAMKIT_TOKEN); timeout also for a model process. ``options`` go to the backend's
    constructor (LocalBackend: cache_bytes, model_thread; ProcessBackend: python, start_timeout, extra_args;
    RemoteBackend: token, connect_timeout, retries, ...).

    Raises InputError for an unknown spec or model options given with a server; the loader's and the
    remote client's own errors (CheckpointError, ServerUnreachableError, ...) as they are.
    """
    from ..errors import InputError

    if spec in (None, "", "local"):
        from .local import LocalBackend

        if model is None or isinstance(model, str):
            model = load_local_model(model, checkpoint, adapter, engine, device)
        elif checkpoint is not None or adapter is not None:
            raise InputError("Pass checkpoint/adapter with a model kind, not with an already loaded model.")
        return LocalBackend(model, **options)
    if spec == "process":
        if model is not None and not isinstance(model, str):
            raise InputError("A model process loads its model itself: pass a model kind, not a loaded model.")
        from .process import ProcessBackend

        if timeout is not None:
            options["timeout"] = float(timeout)
        return ProcessBackend(model or None, checkpoint or None, adapter or None, engine or "auto", device or "auto",
                              **options)
    if is_remote_spec(spec):
        given = [name for name, value in (("model", model), ("checkpoint", checkpoint), ("adapter", adapter))
                 if value and not (name == "model" and value == DEFAULT_KIND)]
        if given:
            raise InputError(f"{', '.join(given)} choose a local model, but the backend {spec} is a server, which uses "
                             "its own model. Start the server with them (medsamkit serve --model KIND --checkpoint "
                             "FILE --adapter FILE) or choose the local backend.")
        from .remote import RemoteBackend

        if timeout is not None:
            options["timeout"] = float(timeout)
        return RemoteBackend(str(spec), token_file=token_file or None, **options)
    raise InputError(f"Unknown backend '{spec}': use 'local', 'process' or a server address like "
                     "http://127.0.0.1:8765.")


def load_local_model(model: str | None = None, checkpoint=None, adapter=None, engine: str | None = None,
                     device: str | None = None):
    """The model a local backend runs (and ``medsamkit serve`` serves): load_model with the one set of defaults."""
    from ..models.loader import load_model

    return load_model(model or None, checkpoint, device, engine=engine, adapter=adapter)


def describe(backend: Backend) -> str:
    """'litemedsam on cpu (onnx)' or 'litemedsam on cuda (torch) at http://host:8765' for summaries."""
    info = backend.info()
    engine = info.extra.get("engine")
    return f"{info.kind} on {info.device}" + (f" ({engine})" if engine else "") + (f" at {info.url}" if info.remote else "")
