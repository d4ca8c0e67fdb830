"""Model families behind one registry; see :mod:`medsamkit.models.registry`."""
from .base import ModelSpec, PromptableModel
from .registry import MODEL_KINDS, get_spec, load_model

__all__ = ["ModelSpec", "PromptableModel", "MODEL_KINDS", "get_spec", "load_model"]
