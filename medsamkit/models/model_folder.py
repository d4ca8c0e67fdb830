"""The per-user model folder: where downloaded and hand-added model files lie, and which of them are verified.

Where: ``<cache>/models/<official file name>``, with ``<cache>`` chosen exactly as for exported models
(:func:`medsamkit.fast.artifacts.cache_dir`: ``$MEDSAMKIT_CACHE_DIR``, else the platform's user cache).
Beside each file lies ``<name>.json``: its SHA-256, size, how it was verified and where it came from.
A file is used only when that record exists and matches the file's size and modification time; a file
copied into the folder by hand (no record yet) is verified in full once, then recorded.
:func:`manual_instructions` tells an offline or air-gapped site how to fill the folder without a download.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import CheckpointError, OutputError
from ..fast.artifacts import cache_dir
from .catalog import CatalogEntry, get_entry
from .download_events import EventFn
from .verify import file_digests, verify_file


def models_dir() -> Path:
    """The folder that holds downloaded and hand-added model files."""
    return cache_dir() / "models"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def cached_path(kind: str, catalog: dict | None = None, events: EventFn | None = None) -> Path | None:
    """Path of the kind's verified file in the cache, or None. A hand-copied file is verified first."""
    entry = get_entry(kind, catalog)
    path = models_dir() / entry.filename
    if not path.is_file():
        return None
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
        st = path.stat()
        if record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
            return path
    except (OSError, ValueError):
        pass
    _emit(events, {"event": "verify", "kind": entry.kind, "path": str(path)})
    try:
        verify_file(path, entry)  # the user's own copy is never deleted here
    except CheckpointError as exc:
        raise CheckpointError(f"The file {path} in the model folder is not usable: {exc} Delete or replace it. "
                              f"{manual_instructions(entry)}") from exc
    try:
        _write_record(path, entry, source="found in the cache folder")
    except (OSError, OutputError):  # io.atomic_output reports write failures as OutputError
        pass  # a read-only shared folder prepared by an administrator: verified now, verified again next time
    return path


def is_cached(kind: str, catalog: dict | None = None) -> bool:
    """Quick check (no hashing): the kind's file is in the cache with a matching record. For GUIs."""
    entry = get_entry(kind, catalog)
    path = models_dir() / entry.filename
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def _write_record(path: Path, entry: CatalogEntry, source: str, digests: dict | None = None) -> dict:
    from ..io import atomic_output

    digests = digests or file_digests(path, ["sha256"])
    st = path.stat()
    record = {"kind": entry.kind, "filename": entry.filename, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "sha256": digests["sha256"], "verified_by": entry.verification, "published_hash": entry.hash,
              "source": source, "licence": entry.licence, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with atomic_output(_record_path(path)) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def manual_instructions(entry: CatalogEntry) -> str:
    """What an offline or air-gapped site does instead: the exact source, the check, the folder."""
    src = entry.urls[0] if entry.urls else " or ".join(entry.pages)
    return (f"Download {entry.filename} from {src} (expected: {entry.expected_text()}), copy it to this machine and "
            f"run: medsamkit models add FILE --model {entry.kind} — or put it into {models_dir()} as "
            f"{entry.filename}, or give it directly with --checkpoint FILE.")


def _emit(events: EventFn | None, event: dict) -> None:
    if events is not None:
        events(event)
