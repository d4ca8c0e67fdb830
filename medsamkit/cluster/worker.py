"""What a worker process keeps between tasks: its backend (opened once, through the same
:func:`medsamkit.backend.open_backend` call as the plain run) and other per-process state."""
from __future__ import annotations

import os
import socket

_CACHE: dict = {}


def cached(key, factory):
    """``factory()`` once per worker process and ``key``; the same object for the next tasks."""
    if key not in _CACHE:
        _CACHE[key] = factory()
    return _CACHE[key]


def close_cached() -> None:
    """Close and forget the backends kept here (a plain run that used this cache in its own process)."""
    for value in list(_CACHE.values()):
        backend = value[0] if isinstance(value, tuple) else value
        if hasattr(backend, "close"):
            backend.close()
    _CACHE.clear()


def spec_key(spec: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in spec.items()))


def backend_for(spec: dict):
    """This worker's backend for the model options ``spec`` (:func:`medsamkit.cluster.options.model_spec`),
    opened once through :func:`medsamkit.backend.open_backend` with the plain run's options."""
    from ..backend import open_backend

    def open_it():
        return open_backend(spec["backend"], model=spec["model"], checkpoint=spec["checkpoint"],
                            adapter=spec["adapter"], engine=spec["engine"], device=spec["device"],
                            token_file=spec["server_token_file"], timeout=spec["server_timeout"])

    return cached(("backend",) + spec_key(spec), open_it)


def where() -> str:
    """host:pid of this worker (in the summary, and in the messages of items it could not read)."""
    return f"{socket.gethostname()}:{os.getpid()}"
