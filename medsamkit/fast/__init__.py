"""Fast inference: ONNX Runtime engine for CPUs, engine choice, and encode-ahead for volumes.

Public API::

    from medsamkit.models import load_model
    model = load_model("litemedsam", device="cpu", engine="auto")   # ONNX Runtime when installed
    from medsamkit.fast import with_engine, encode_ahead            # lower-level pieces

The PyTorch model stays the reference; see engine.py for the choice and fallback rules,
artifacts.py for the per-user cache of exported graphs, prefetch.py for overlapping encoding
of upcoming slices with decoding.
"""
from __future__ import annotations

from .engine import ENGINES, PRECISIONS, FastPathUnavailable, resolve_engine, with_engine

__all__ = ["ENGINES", "PRECISIONS", "FastPathUnavailable", "resolve_engine", "with_engine"]
