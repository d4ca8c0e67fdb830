"""Resumable training checkpoints: written atomically, read safely, exact to the step.

A checkpoint (``<run>/checkpoints/last.pt``) holds only plain containers and tensors, so it is read
back with ``torch.load(weights_only=True)`` — no pickled code:

``format``/``version``, ``config`` (TrainConfig dict), ``base`` (model kind + checkpoint SHA-256),
``parts``, ``trained_state`` (state_dict entries of the trained parts, CPU), ``optimizer``,
``scheduler``, ``rng`` (python, numpy legacy, torch CPU and CUDA states), ``epoch`` (the epoch in
progress), ``batch_in_epoch`` (micro-batches of that epoch already consumed), ``step`` (optimizer
steps done), ``best`` (best validation Dice, its epoch, epochs without improvement), ``history``.

Design note: writes go to a temporary file in the same folder and are renamed over ``last.pt``
only when complete (``medsamkit.io.atomic_output``), so a run killed at any moment leaves the
previous good checkpoint. A killed writer can leave a ``.last.pt.*.partial.pt`` file behind;
:func:`remove_partials` deletes those when a run (re)starts.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..io import atomic_output

FORMAT = "medsamkit-training-checkpoint"
VERSION = 1


def rng_state() -> dict:
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: "str | Path", state: dict) -> Path:
    """Write ``state`` (see module docstring) atomically to ``path``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_output(path) as tmp:
        _write(payload, tmp)
    return path


def _write(payload: dict, tmp: str) -> None:
    """The one place bytes are written (tests kill the process in here to prove atomicity)."""
    import torch

    torch.save(payload, tmp)


def load_checkpoint(path: "str | Path") -> dict:
    """Read a training checkpoint; CheckpointError with a remedy when missing, damaged or foreign."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No training checkpoint at {path}; start a new run (without --resume).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"Training checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:160]}). "
                              "It may be damaged; start a new run in another --out folder.") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a medsamkit training checkpoint.")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer medsamkit (checkpoint version {state['version']}); "
                              "update medsamkit to resume it.")
    return state


def remove_partials(folder: "str | Path") -> list[Path]:
    """Delete temporary files a killed writer left in ``folder``; returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and ".partial" in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
