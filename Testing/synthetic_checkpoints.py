"""Synthetic checkpoints with the exact released layouts and containers (for tests and demos).

The official SAM / MedSAM / MedicoSAM / SAM-Med2D weights cannot be bundled or downloaded in CI,
so loaders are tested against files that have the real keys, shapes, dtypes and container but
tiny storage: every tensor is one random scalar broadcast (stride 0) to its real shape, so even a
SAM ViT-H checkpoint is ~200 KB on disk. ``torch.load`` + strict ``load_state_dict`` accept them
exactly as they would accept the released file; the network's *outputs* are meaningless, so use
LiteMedSAM's real weights for any test of segmentation quality.

The reference layout comes from the kind's own builder run on PyTorch's ``meta`` device (shapes
only: no memory, no random initialisation), so this costs well under a second for any kind.

Containers (``container=``), as written by the projects' own code (see the shared checkpoint notes):

- ``"release"``: what the authors publish: a raw state_dict for SAM/MedSAM/MedicoSAM/LiteMedSAM;
  ``{'model': sd, 'optimizer': <pickled torch.optim.Adam object>}`` for SAM-Med2D (sam-med2d_b.pth).
- ``"raw"``: a plain state_dict.
- ``"torch_em"``: MedicoSAM/micro-sam training checkpoint: ``{'model_state': {'sam.' + key: ...},
  'optimizer_state': ..., 'epoch': ...}``.
- ``"ddp"``: MedSAM multi-GPU training checkpoint: ``{'model': {'module.' + key: ...},
  'optimizer': optimizer.state_dict(), 'epoch': ...}``.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

from medsamkit.models.registry import reference_layout  # noqa: F401  (the package's own: the catalog checks files with it)

CONTAINERS = ("release", "raw", "torch_em", "ddp")

def tiny_state_dict(layout, seed: int = 0) -> "collections.OrderedDict":
    """``{key: one random scalar broadcast to the key's shape and dtype}`` (CPU, stride 0).

    layout: a mapping key -> tensor (any device, e.g. from :func:`reference_layout`). Copy a tensor
    (``.clone()``) before editing it in place: broadcast tensors share their single element.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    return collections.OrderedDict(
        (k, torch.randn((), generator=gen).to(v.dtype).expand(tuple(v.shape))) for k, v in layout.items())


def _dummy_adam():
    import torch

    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def container(kind: str, state_dict, container: str = "release") -> object:
    """Wrap ``state_dict`` the way the named container stores it (see module docstring)."""
    if container == "release":
        if kind == "sam-med2d":  # SAM-Med2D's train.py pickles the optimizer *object*
            return {"model": state_dict, "optimizer": _dummy_adam()}
        return collections.OrderedDict(state_dict)
    if container == "raw":
        return collections.OrderedDict(state_dict)
    if container == "torch_em":
        return {"model_state": collections.OrderedDict(("sam." + k, v) for k, v in state_dict.items()),
                "optimizer_state": _dummy_adam().state_dict(), "epoch": 3, "iteration": 1200}
    if container == "ddp":
        return {"model": collections.OrderedDict(("module." + k, v) for k, v in state_dict.items()),
                "optimizer": _dummy_adam().state_dict(), "epoch": 3}
    raise ValueError(f"Unknown container '{container}'; choose one of {', '.join(CONTAINERS)}.")


def write_checkpoint(kind: str, path: "str | os.PathLike", container_kind: str = "release", seed: int = 0) -> Path:
    """Write a tiny checkpoint of ``kind`` with the real layout in the given container; returns the path."""
    import torch

    path = Path(path)
    torch.save(container(kind, tiny_state_dict(reference_layout(kind), seed), container_kind), path)
    return path
