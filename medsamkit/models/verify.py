"""Checking a model file against its catalog entry: published hash (SHA-256 or xxh128), size, layout."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import CheckpointError, DependencyError
from .catalog import CatalogEntry

CHUNK = 1 << 20


def file_digests(path: "str | os.PathLike", algorithms) -> dict:
    """``{algorithm: hex}`` for 'sha256' and/or 'xxh128', in one pass over the file."""
    hashers = {}
    for algo in set(algorithms):
        if algo == "sha256":
            hashers[algo] = hashlib.sha256()
        elif algo == "xxh128":
            hashers[algo] = _xxhash().xxh128()
        else:
            raise ValueError(f"unknown hash algorithm {algo}")
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for h in hashers.values():
                h.update(block)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def _xxhash():
    try:
        import xxhash
    except ImportError as exc:
        raise DependencyError("Checking this model's published xxh128 hash needs the Python package 'xxhash'. "
                              "Install it with: python -m pip install xxhash") from exc
    return xxhash


def verify_file(path: Path, entry: CatalogEntry, digests: dict | None = None) -> dict:
    """Check a file against the entry: published hash, else size, and its layout when no hash is published.

    Returns the digests (always with 'sha256'). Raises CheckpointError saying what differs.
    """
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise CheckpointError(f"{path.name} has {size:,} bytes; the authors' {entry.filename} has {entry.size:,}. "
                              "It is truncated or another file.")
    algos = ["sha256"] + ([entry.hash_algorithm] if entry.hash_algorithm not in (None, "sha256") else [])
    digests = digests or file_digests(path, algos)
    if entry.hash and digests[entry.hash_algorithm] != entry.hash_hex:
        raise CheckpointError(
            f"{path.name} is not the authors' {entry.filename}: its {entry.hash_algorithm.upper()} is "
            f"{digests[entry.hash_algorithm]}, the published one is {entry.hash_hex} ({entry.hash_source}).")
    if not entry.hash:
        check_loads_as(path, entry.kind)
    return digests


def check_loads_as(path: Path, kind: str) -> None:
    """The file reads with the checkpoint reader and has exactly the kind's keys and shapes (no weights built)."""
    from . import checkpoints
    from .synthetic import reference_layout

    state = checkpoints.read_checkpoint(path)
    checkpoints.check_layout(state, kind, source=str(path))
    ref = reference_layout(kind)
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref]
    wrong = [k for k in ref if k in state and tuple(state[k].shape) != tuple(ref[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not have the layout of '{kind}': {len(missing)} keys missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]}). "
            f"Expected {checkpoints.LAYOUT_HINTS.get(kind, kind)}.")
