"""Fast inference: ONNX Runtime engine for CPUs and the engine choice (default ``auto``).

Public API::

    from medsamkit.models import load_model
    model = load_model("litemedsam", device="cpu", engine="auto")   # ONNX Runtime when installed
    from medsamkit.fast import with_engine                          # the lower-level piece

The PyTorch model stays the reference; see engine.py for the choice and fallback rules,
artifacts.py for the per-user cache of exported graphs.
"""
from __future__ import annotations

from .engine import DEFAULT_ENGINE, ENGINES, PRECISIONS, FastPathUnavailable, resolve_engine, with_engine

__all__ = ["DEFAULT_ENGINE", "ENGINES", "PRECISIONS", "FastPathUnavailable", "resolve_engine", "with_engine"]
