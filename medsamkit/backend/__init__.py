"""Backends: one interface (base.Backend), run locally (local.py) or on a server (remote.py).

``open_backend(spec)`` is the one switch the CLI, batch and the Slicer effect use::

    backend = open_backend("local", model=load_model())           # in this process
    backend = open_backend("http://gpu-box:8765", token="...")    # on a medsamkit server
    backend.set_volume(volume, normalization="lung")
    mask = backend.predict(box=[x0, y0, x1, y1], slice_index=k, axis=0).mask

Long calls go through worker.BackendWorker so a GUI never blocks.
"""
from __future__ import annotations

from .base import Backend, BackendInfo, ImageInfo

__all__ = ["Backend", "BackendInfo", "ImageInfo", "open_backend", "is_remote_spec"]


def is_remote_spec(spec: "str | None") -> bool:
    """True for a server address (``http://host:port``, ``https://...``)."""
    return bool(spec) and str(spec).lower().startswith(("http://", "https://"))


def open_backend(spec: "str | None" = "local", model=None, **kwargs) -> Backend:
    """``"local"``/None -> LocalBackend(model, ...); ``"http://host:port"`` -> RemoteBackend(url, **kwargs)."""
    if spec in (None, "", "local"):
        from .local import LocalBackend

        return LocalBackend(model, **kwargs)
    if is_remote_spec(spec):
        from .remote import RemoteBackend

        return RemoteBackend(str(spec), **kwargs)
    from ..errors import InputError

    raise InputError(f"Unknown backend '{spec}': use 'local' or a server address like http://127.0.0.1:8765.")
