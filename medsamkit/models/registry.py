"""Model kind -> spec (builder, checkpoint layout, preprocessing): the table every family registers into.

The families are registered when :mod:`medsamkit.models` is imported (its ``__init__`` imports them in the
order the docs use); none of them imports the loader, and this table imports no family, so the catalog's
download checks (models/verify.py) can read layouts from here without a circle. Loading lives in
:mod:`medsamkit.models.loader`.
"""
from __future__ import annotations

from ..errors import InputError
from . import checkpoints
from .base import ModelSpec

#: every registered kind, the default (litemedsam) first; kept up to date by :func:`register`
MODEL_KINDS: tuple = ()
_SPECS: dict[str, ModelSpec] = {}
_POST_LOAD: dict = {}   # kind -> fn(model): applied after the strict load (e.g. a shipped weight delta)
# Model kinds whose weights were trained with point prompts (clicks give useful masks). The others
# (LiteMedSAM, MedSAM) were trained with boxes only: a single click gives an (almost) empty mask,
# so front ends should say "this model is box-only" in point modes (accepts_point_prompts).
_POINT_CAPABLE = {"litemedsam-clicks", "sam-vit-b", "sam-vit-l", "sam-vit-h", "sam-med2d", "medicosam"}


def register(spec: ModelSpec, post_load=None, point_prompts: bool | None = None,
             checkpoint_layout: str | None = None) -> None:
    """Add a kind. post_load(model): run on every loaded model of this kind (after the strict load);
    point_prompts: whether its weights were trained with point prompts (see accepts_point_prompts);
    checkpoint_layout: the kind whose checkpoint files this kind loads (litemedsam-clicks: litemedsam)."""
    global MODEL_KINDS
    _SPECS[spec.kind] = spec
    MODEL_KINDS = tuple(_SPECS)
    if checkpoint_layout is not None:
        checkpoints.SAME_LAYOUT[spec.kind] = checkpoint_layout
    if post_load is not None:
        _POST_LOAD[spec.kind] = post_load
    if point_prompts is not None:
        (_POINT_CAPABLE.add if point_prompts else _POINT_CAPABLE.discard)(spec.kind)


def accepts_point_prompts(kind: str) -> bool:
    """True when model ``kind`` was trained with point prompts, so clicks alone give useful masks.

    False for box-trained kinds (litemedsam, medsam): point modes should tell the user the model is
    box-only (or offer litemedsam-clicks) instead of returning an empty mask. Raises InputError for
    an unknown kind.
    """
    return get_spec(kind).kind in _POINT_CAPABLE


def get_spec(kind: str) -> ModelSpec:
    key = (kind or "").strip().lower()
    if key not in _SPECS:
        raise InputError(f"Unknown model kind '{kind}'. Choose one of: {', '.join(_SPECS)}.")
    return _SPECS[key]




def post_load_of(kind: str):
    """The function run on every loaded model of ``kind`` after its strict load, or None."""
    return _POST_LOAD.get(get_spec(kind).kind)


def known_kind(sha: str) -> str | None:
    """The kind whose released weights have SHA-256 ``sha`` (the specs' known_sha256), or None."""
    for spec in _SPECS.values():
        if sha in spec.known_sha256:
            return spec.known_sha256[sha]
    return None


def reference_layout(kind: str) -> dict:
    """The kind's state_dict on PyTorch's ``meta`` device (keys, shapes, dtypes in order; no memory, no init).

    What a checkpoint of ``kind`` must hold: the catalog checks downloaded files against it
    (models/verify.py) and the tests build tiny checkpoints with the released layouts from it.
    """
    import collections

    import torch

    with torch.device("meta"):
        net = get_spec(kind).build()
    return collections.OrderedDict(net.state_dict())
