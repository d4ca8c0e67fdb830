"""medsamkit: the engine of the MedSAM Slicer extension (no Slicer or Qt imports here).

Quick use (the one interface every face uses: here, or on a server with a URL)::

    from medsamkit import open_backend
    backend = open_backend("local")              # LiteMedSAM, bundled weights, --engine auto
    backend.set_image(image, normalization="soft-tissue")
    mask = backend.predict(box=[x0, y0, x1, y1]).mask

The engine underneath: ``Predictor(load_model())`` (set_image / predict on one image).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open_backend", "load_model", "Predictor", "EmbeddingCache", "MedSAMError"]


def __getattr__(name):  # lazy: importing medsamkit must not import torch
    if name == "open_backend":
        from .backend import open_backend

        return open_backend
    if name == "load_model":
        from .models.loader import load_model

        return load_model
    if name == "Predictor":
        from .predictor import Predictor

        return Predictor
    if name == "EmbeddingCache":
        from .embedding_cache import EmbeddingCache

        return EmbeddingCache
    if name == "MedSAMError":
        from .errors import MedSAMError

        return MedSAMError
    raise AttributeError(name)
