"""medsamkit: the engine of the MedSAM Slicer extension (no Slicer or Qt imports here).

Quick use::

    from medsamkit import load_model, Predictor
    predictor = Predictor(load_model())          # LiteMedSAM, bundled weights
    predictor.set_image(image, normalization="soft-tissue")
    mask = predictor.predict(box=[x0, y0, x1, y1]).mask
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "Predictor", "EmbeddingCache", "MedSAMError"]


def __getattr__(name):  # lazy: importing medsamkit must not import torch
    if name == "load_model":
        from .models.registry import load_model

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
