"""Adapters registered for use in the Segment Editor effect: a small JSON file in the user's config folder.

The MedSAMTraining module registers the adapter of a finished run here; the MedSAM effect (and any
other front end) lists them with :func:`list_adapters` and loads one with
``load_model(entry["base_kind"], checkpoint, adapter=entry["path"])``.

File: ``<config dir>/adapters.json`` where the config dir is ``$MEDSAMKIT_CONFIG_DIR``, else
``%APPDATA%\\medsamkit`` (Windows), ``~/Library/Application Support/medsamkit`` (macOS),
``$XDG_CONFIG_HOME/medsamkit`` or ``~/.config/medsamkit`` (Linux)::

    {"format": "medsamkit-adapter-registry", "version": 1,
     "adapters": [{"name": "liver-ct", "path": "/abs/run/adapter.safetensors", "base_kind": "litemedsam",
                   "base_checkpoint_sha256": "...", "parts": ["decoder"], "val_dice": 0.91,
                   "registered": "2026-01-01T12:00:00+00:00"}]}

Writes are atomic (a crash never leaves a half-written registry). Entries whose file has gone
are listed with ``"missing": true`` rather than dropped, so the user sees what disappeared.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from ..errors import InputError
from ..io import atomic_output

FORMAT = "medsamkit-adapter-registry"


def config_dir() -> Path:
    env = os.environ.get("MEDSAMKIT_CONFIG_DIR")
    if env:
        return Path(env)
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "medsamkit"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "medsamkit"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "medsamkit"


def registry_path() -> Path:
    return config_dir() / "adapters.json"


def _load() -> list[dict]:
    path = registry_path()
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"The adapter registry {path} cannot be read ({exc}); fix or delete the file.") from exc
    return list(data.get("adapters", [])) if isinstance(data, dict) else []


def _store(entries: list[dict]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps({"format": FORMAT, "version": 1, "adapters": entries}, indent=1) + "\n",
                             encoding="utf-8")


def register_adapter(path: "str | os.PathLike", name: str | None = None) -> dict:
    """Add (or replace, by name) an adapter file; returns its entry. CheckpointError if it is no adapter."""
    from ..models.adapter_file import read_manifest

    path = Path(path).resolve()
    manifest = read_manifest(path)
    name = (name or path.parent.name or path.stem).strip()
    if not name:
        raise InputError("Give the adapter a name.")
    entry = {
        "name": name,
        "path": str(path),
        "base_kind": manifest["base"]["kind"],
        "base_checkpoint_sha256": manifest["base"].get("checkpoint_sha256"),
        "base_checkpoint_name": manifest["base"].get("checkpoint_name"),
        "parts": manifest.get("parts", []),
        "val_dice": manifest.get("metrics", {}).get("val_dice"),
        "registered": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    entries = [e for e in _load() if e.get("name") != name]
    entries.append(entry)
    _store(entries)
    return entry


def list_adapters(kind: str | None = None) -> list[dict]:
    """Registered adapters (optionally only those for base model ``kind``), each with ``missing`` set."""
    out = []
    for e in _load():
        if kind and e.get("base_kind") != kind:
            continue
        out.append({**e, "missing": not Path(e.get("path", "")).is_file()})
    return out
