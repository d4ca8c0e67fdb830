"""Model weights on first use: download from the catalog into the per-user cache, verified, resumable, locked.

Where the files lie, and when a file there is trusted without hashing it again: :mod:`.model_folder`
(``<cache>/models/<official file name>`` with a ``<name>.json`` record beside each).

How a download runs (:func:`ensure_checkpoint`):

1. A restricted licence must have been accepted (argument, ``$MEDSAMKIT_ACCEPT_LICENCES``, or recorded).
2. A lock file (``<name>.lock``, an OS file lock) makes a second process wait, then use the first one's file.
3. Bytes go to ``<name>.part`` (:mod:`.transfer`). A dropped connection is resumed with an HTTP ``Range``
   request (``If-Range`` guards against a changed file); a ``.part`` left by an interrupted run is resumed
   by the next run.
4. The file is checked before it gets its real name: the published hash (SHA-256 or micro-sam's xxh128),
   else the published size, and always that it reads as the kind's checkpoint layout when no hash is
   published. A wrong file is deleted with a message that says so.
5. ``os.replace`` puts it in place; only then is the record written. A reader never sees a partial file.

Proxies come from the environment (``HTTPS_PROXY``/``NO_PROXY``; urllib reads them). Every network wait
has a timeout (``$MEDSAMKIT_DOWNLOAD_TIMEOUT``, default 30 s without a byte). Errors name the URL, the
expected hash and the folder to drop the file into, so an air-gapped site can copy it by hand.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError, MedSAMError
from ..fast.artifacts import CacheDirError
from .catalog import CatalogEntry, get_entry, load_catalog
from .download_events import EventFn, JsonLines, TqdmBytes, default_events  # noqa: F401 (public here too)
from .filelock import FileLock
from .model_folder import (_emit, _write_record, cached_path, is_cached,  # noqa: F401 (public here too)
                           manual_instructions, models_dir)
from .transfer import CHUNK, DownloadError, _fetch_url, _meta  # noqa: F401 (public here too)
from .verify import _xxhash, check_loads_as, file_digests, verify_file  # noqa: F401 (public here too)

ACCEPT_ENV = "MEDSAMKIT_ACCEPT_LICENCES"
TIMEOUT_ENV = "MEDSAMKIT_DOWNLOAD_TIMEOUT"


class LicenceNotAccepted(MedSAMError):
    """The model's licence restricts its use and has not been accepted yet (see :func:`licence_notice`)."""

    def __init__(self, entry: CatalogEntry, message: str):
        super().__init__(message)
        self.entry = entry


# ---------------------------------------------------------------------------------------- licences

def licence_notice(entry: CatalogEntry) -> str:
    return (f"{entry.title} ({entry.filename}) is released under: {entry.licence} — {entry.licence_url}\n"
            f"Please cite: {entry.citation}")


def _accepted_file() -> Path:
    return models_dir() / "licences-accepted.json"


def licence_accepted(entry: CatalogEntry) -> bool:
    if not entry.restricted:
        return True
    env = {s.strip().lower() for s in os.environ.get(ACCEPT_ENV, "").split(",") if s.strip()}
    if "all" in env or entry.kind in env:
        return True
    try:
        return entry.kind in json.loads(_accepted_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def record_acceptance(entry: CatalogEntry) -> None:
    from ..io import atomic_output

    path = _accepted_file()
    try:
        accepted = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        accepted = {}
    accepted[entry.kind] = {"licence": entry.licence, "accepted": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(accepted, indent=1), encoding="utf-8")


# ---------------------------------------------------------------------------------------- download

def checkpoint_for(kind: str) -> str:
    """load_model's default weights for a kind without bundled ones: the cached file, else downloaded now."""
    catalog = load_catalog()
    if kind not in catalog:
        raise CheckpointError(f"Model kind '{kind}' has no bundled weights and no catalog entry; pass the checkpoint "
                              "file you downloaded from its authors with --checkpoint FILE.")
    return ensure_checkpoint(kind, events=default_events(), catalog=catalog)


def ensure_checkpoint(kind: str, events: EventFn | None = None, accept_licence: bool = False,
                      catalog: dict | None = None, timeout: float | None = None, retries: int = 3,
                      cancel: Callable[[], bool] | None = None) -> str:
    """Path of the kind's verified weights, downloading them first when they are not in the cache.

    events: receives dicts (``event``: start / progress / waiting / verify / done); see :class:`JsonLines`.
    accept_licence: accept a restricting licence (shown in the error otherwise). timeout: seconds without a
    byte before giving up (default $MEDSAMKIT_DOWNLOAD_TIMEOUT or 30). retries: resumptions after a dropped
    connection. Raises LicenceNotAccepted, DownloadError, CacheDirError, DependencyError, CheckpointError.
    """
    catalog = load_catalog() if catalog is None else catalog
    entry = get_entry(kind, catalog)
    found = cached_path(entry.kind, catalog, events)
    if found is not None:
        _emit(events, {"event": "done", "kind": entry.kind, "path": str(found), "cached": True})
        return str(found)
    if not licence_accepted(entry):
        if not accept_licence:
            raise LicenceNotAccepted(entry, f"{licence_notice(entry)}\nThe licence restricts use. Accept it with "
                                     f"'medsamkit models fetch {entry.kind} --accept-licence', or set "
                                     f"{ACCEPT_ENV}={entry.kind} for servers and scripts.")
        record_acceptance(entry)
    if not entry.urls:
        raise DownloadError(f"{entry.title} cannot be downloaded automatically: its authors publish it only on "
                            f"{' or '.join(entry.pages)}. {manual_instructions(entry)}")
    if entry.hash_algorithm == "xxh128":
        _xxhash()  # fail before a long download, not after it
    folder = models_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CacheDirError(f"Cannot write to the model folder {folder} ({exc.strerror or exc}). Set "
                            f"MEDSAMKIT_CACHE_DIR to a writable folder. {manual_instructions(entry)}") from exc
    timeout = float(os.environ.get(TIMEOUT_ENV, 30)) if timeout is None else timeout
    with FileLock(folder / (entry.filename + ".lock"),
                  on_wait=lambda: _emit(events, {"event": "waiting", "kind": entry.kind,
                                                 "message": "another process is downloading this file"})):
        found = cached_path(entry.kind, catalog, events)  # the other process may have finished it
        if found is not None:
            _emit(events, {"event": "done", "kind": entry.kind, "path": str(found), "cached": True})
            return str(found)
        return str(_download(entry, folder, events, timeout, retries, cancel))


def _download(entry, folder, events, timeout, retries, cancel) -> Path:
    final = folder / entry.filename
    part = folder / (entry.filename + ".part")
    last_error = None
    for url in entry.urls:
        try:
            _fetch_url(url, part, entry, events, timeout, retries, cancel)
        except DownloadError as exc:
            last_error = exc
            continue
        _emit(events, {"event": "verify", "kind": entry.kind, "path": str(part)})
        try:
            digests = verify_file(part, entry)
        except CheckpointError as exc:
            part.unlink(missing_ok=True)
            _meta(part).unlink(missing_ok=True)
            raise DownloadError(f"The download from {url} was refused and deleted: {exc} Try again later; if "
                                f"it persists the server is sending another file. {manual_instructions(entry)}") \
                from exc
        os.replace(part, final)
        _meta(part).unlink(missing_ok=True)
        record = _write_record(final, entry, source=url, digests=digests)
        _emit(events, {"event": "done", "kind": entry.kind, "path": str(final), "size": record["size"],
                       "sha256": record["sha256"], "verified_by": entry.verification})
        return final
    raise last_error


# ---------------------------------------------------------------------------------------- adding by hand

def add_file(source: "str | os.PathLike", kind: str | None = None, catalog: dict | None = None,
             events: EventFn | None = None) -> Path:
    """Verify a hand-copied file against the catalog and register it in the cache (copied under its official name).

    kind: the catalog kind; None = recognised from the file name (official names) or the file's keys.
    Raises CheckpointError (wrong or damaged file: nothing is registered) or InputError.
    """
    from ..errors import InputError
    from ..io import atomic_output

    source = Path(source)
    if not source.is_file():
        raise InputError(f"No such file: {source}.")
    catalog = load_catalog() if catalog is None else catalog
    if kind is None:
        kind = next((k for k, e in catalog.items() if e.filename == source.name), None)
    if kind is None:
        from . import checkpoints

        kind = checkpoints.detect_kind(checkpoints.read_checkpoint(source), source)
        if kind not in catalog:
            raise InputError(f"Cannot tell which catalog model {source.name} is; pass --model KIND "
                             f"({', '.join(catalog)}).")
    entry = get_entry(kind, catalog)
    _emit(events, {"event": "verify", "kind": entry.kind, "path": str(source)})
    digests = verify_file(source, entry)
    if entry.hash:  # a hash proves content; the layout check proves it loads as this kind
        check_loads_as(source, entry.kind)
    folder = models_dir()
    final = folder / entry.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if final.resolve() != source.resolve():
            with atomic_output(final) as tmp:
                shutil.copyfile(source, tmp)
    except OSError as exc:
        raise CacheDirError(f"Cannot write to the model folder {folder} ({exc.strerror or exc}). Set "
                            "MEDSAMKIT_CACHE_DIR to a writable folder, or pass the file with --checkpoint.") from exc
    _write_record(final, entry, source=f"added by hand from {source.name}", digests=digests)
    _emit(events, {"event": "done", "kind": entry.kind, "path": str(final), "size": final.stat().st_size,
                   "sha256": digests["sha256"], "verified_by": entry.verification})
    return final
