"""Model families behind one registry (:mod:`.registry`, the table) and one loader (:mod:`.loader`).

Importing this package registers the families, the default first: LiteMedSAM and litemedsam-clicks, then
SAM / MedSAM / SAM-Med2D / MedicoSAM (``sam.py``, when its module can be imported).
"""
from . import litemedsam, litemedsam_clicks, registry
from .base import ModelSpec, PromptableModel

registry.register(litemedsam.SPEC)
registry.register(litemedsam_clicks.SPEC, post_load=litemedsam_clicks.apply_delta, point_prompts=True,
                  checkpoint_layout="litemedsam")
try:  # the other families register themselves when their module imports (sam.py registers SAM-Med2D too)
    from . import sam  # noqa: F401
except ImportError:
    pass

from .loader import load_model  # noqa: E402  (after the families: it reads the table they fill)
from .registry import MODEL_KINDS, get_spec  # noqa: E402

__all__ = ["ModelSpec", "PromptableModel", "MODEL_KINDS", "get_spec", "load_model"]
