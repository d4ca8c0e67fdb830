"""Fast inference: ONNX Runtime engine for CPUs (LiteMedSAM without torch) and the engine choice (default ``auto``).

Public API::

    from medsamkit.models import load_model
    model = load_model("litemedsam", device="cpu", engine="auto")   # ONNX Runtime when installed
    from medsamkit.fast import with_engine                          # the lower-level piece

The PyTorch model stays the reference; see torchfree.py for the torch-free LiteMedSAM (shipped
graphs in graphs/, bound to the weights by graphs.py), engine.py for the choice and fallback rules,
artifacts.py for the per-user cache of exported graphs (other layouts, int8).
"""
from __future__ import annotations

from .engine import DEFAULT_ENGINE, ENGINES, PRECISIONS, FastPathUnavailable, resolve_engine, with_engine

__all__ = ["DEFAULT_ENGINE", "ENGINES", "PRECISIONS", "FastPathUnavailable", "resolve_engine", "with_engine"]
