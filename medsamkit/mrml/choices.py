"""What the Slicer modules offer the user, each read from its one source in the engine.

The GUI folders import only the mrml layer (and backend, protocol, errors; MedSAMTraining also training),
so the lists a combo box shows and the defaults a parameter gets come from here, never typed again:

- model kinds and which of them take clicks: :mod:`medsamkit.models.registry`
- whether a catalog model must be downloaded first: :mod:`medsamkit.models.catalog` / ``download``
- intensity windows: :data:`medsamkit.preprocess.WINDOW_PRESETS`
- the marker margin: :data:`medsamkit.markers.DEFAULT_MARGIN_MM`
- trained adapters: :mod:`medsamkit.training.adapter_registry`
- training parts: :mod:`medsamkit.training.config`
- Dice for the module self-test: :func:`medsamkit.metrics.dice`

Importing this module is light (no torch, no slicer); each function imports what it reads.
"""
from __future__ import annotations

from ..markers import DEFAULT_MARGIN_MM  # noqa: F401  (re-exported for the effect's parameter default)

#: Effect window choices besides the presets: the view's own window/level, then the engine's modes.
DISPLAY_WINDOW = "display"


def model_kinds() -> tuple:
    """Every model kind the registry builds, the default (litemedsam) first."""
    from ..models.registry import MODEL_KINDS

    return tuple(MODEL_KINDS)


def accepts_point_prompts(kind: str) -> bool:
    """True when ``kind`` was trained with clicks (point-only prompts give useful masks)."""
    from ..models.registry import accepts_point_prompts as accepts

    return accepts(kind)


def needs_download(kind: str) -> bool:
    """True for a catalog model whose file is not cached yet (no hashing: quick enough for a click)."""
    from ..models import catalog, download

    return kind in catalog.load_catalog() and not download.is_cached(kind)


def window_choices(display: bool = True) -> tuple:
    """The effect's / training module's window list: (display,) auto, the CT presets, percentile (, none)."""
    from ..preprocess import WINDOW_PRESETS

    head = (DISPLAY_WINDOW, "auto") if display else ("auto",)
    tail = ("percentile",) if display else ("percentile", "none")
    return head + tuple(WINDOW_PRESETS) + tail


def window_help() -> str:
    """One line naming each CT preset with its width/level, for tooltips and help texts."""
    from ..preprocess import PERCENTILES, WINDOW_PRESETS

    presets = ", ".join(f"{name} W{w:g}/L{level:g}" for name, (w, level) in WINDOW_PRESETS.items())
    return (f"CT presets: {presets}; percentile clips MR/US/X-ray to the {PERCENTILES[0]:g}-{PERCENTILES[1]:g} "
            "percentiles; auto picks one from the data.")


def training_part_choices() -> tuple:
    """What MedSAM Training offers to train, in the order shown: single parts, then the presets."""
    from ..training.config import PART_CHOICES

    return PART_CHOICES


def list_adapters(kind: str | None = None):
    """Registered adapters (MedSAM Training's output), only those for base model ``kind`` when given."""
    from ..training.adapter_registry import list_adapters as listed

    return listed(kind)


def adapter_registry_path():
    """The adapter registry file (its mtime and size say when the adapter list changed)."""
    from ..training.adapter_registry import registry_path

    return registry_path()


def dice(a, b) -> float:
    """Dice of two masks (the engine's one definition)."""
    from ..metrics import dice as dice_of

    return dice_of(a, b)
