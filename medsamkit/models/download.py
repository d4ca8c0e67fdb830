"""Model weights on first use: download from the catalog into the per-user cache, verified, resumable, locked.

Where: ``<cache>/models/<official file name>``, with ``<cache>`` chosen exactly as for exported models
(:func:`medsamkit.fast.artifacts.cache_dir`: ``$MEDSAMKIT_CACHE_DIR``, else the platform's user cache).
Beside each file lies ``<name>.json``: its SHA-256, size, how it was verified and where it came from.
A file is used only when that record exists and matches the file's size and modification time; a file
copied into the folder by hand (no record yet) is verified in full once, then recorded.

How a download runs (:func:`ensure_checkpoint`):

1. A restricted licence must have been accepted (argument, ``$MEDSAMKIT_ACCEPT_LICENCES``, or recorded).
2. A lock file (``<name>.lock``, an OS file lock) makes a second process wait, then use the first one's file.
3. Bytes go to ``<name>.part``. A dropped connection is resumed with an HTTP ``Range`` request (``If-Range``
   guards against a changed file); a ``.part`` left by an interrupted run is resumed by the next run.
4. The file is checked before it gets its real name: the published hash (SHA-256 or micro-sam's xxh128),
   else the published size, and always that it reads as the kind's checkpoint layout when no hash is
   published. A wrong file is deleted with a message that says so.
5. ``os.replace`` puts it in place; only then is the record written. A reader never sees a partial file.

Proxies come from the environment (``HTTPS_PROXY``/``NO_PROXY``; urllib reads them). Every network wait
has a timeout (``$MEDSAMKIT_DOWNLOAD_TIMEOUT``, default 30 s without a byte). Errors name the URL, the
expected hash and the folder to drop the file into, so an air-gapped site can copy it by hand.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError, MedSAMError, OutputError
from ..fast.artifacts import CacheDirError, cache_dir
from .catalog import CatalogEntry, get_entry, load_catalog
from .download_events import EventFn, JsonLines, TqdmBytes, default_events  # noqa: F401 (public here too)
from .filelock import FileLock
from .verify import _xxhash, check_loads_as, file_digests, verify_file  # noqa: F401 (public here too)

ACCEPT_ENV = "MEDSAMKIT_ACCEPT_LICENCES"
TIMEOUT_ENV = "MEDSAMKIT_DOWNLOAD_TIMEOUT"
CHUNK = 1 << 20


class DownloadError(MedSAMError):
    """A model file could not be downloaded or verified; nothing unverified was left under its name."""


class LicenceNotAccepted(MedSAMError):
    """The model's licence restricts its use and has not been accepted yet (see :func:`licence_notice`)."""

    def __init__(self, entry: CatalogEntry, message: str):
        super().__init__(message)
        self.entry = entry


def models_dir() -> Path:
    """The folder that holds downloaded and hand-added model files."""
    return cache_dir() / "models"


# ---------------------------------------------------------------------------------------- cached files

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


def manual_instructions(entry: CatalogEntry) -> str:
    """What an offline or air-gapped site does instead: the exact source, the check, the folder."""
    src = entry.urls[0] if entry.urls else " or ".join(entry.pages)
    return (f"Download {entry.filename} from {src} (expected: {entry.expected_text()}), copy it to this machine and "
            f"run: medsamkit models add FILE --model {entry.kind} — or put it into {models_dir()} as "
            f"{entry.filename}, or give it directly with --checkpoint FILE.")


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


def _meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _fetch_url(url, part, entry, events, timeout, retries, cancel) -> None:
    """Bring ``part`` to the complete file from ``url``, resuming it across dropped connections."""
    from .. import __version__

    attempt = 0
    while True:
        start = part.stat().st_size if part.is_file() else 0
        meta = _read_meta(part)
        if start and meta.get("url") != url:
            part.unlink()
            start = 0
        request = urllib.request.Request(url, headers={"User-Agent": f"medsamkit/{__version__}"})
        if start:
            request.add_header("Range", f"bytes={start}-")
            if meta.get("validator"):
                request.add_header("If-Range", meta["validator"])
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # our part is not a prefix the server knows: start again
                part.unlink()
                continue
            _cleanup_empty(part)
            raise DownloadError(f"The server answered HTTP {exc.code} ({exc.reason}) for {url}. "
                                f"{'The file is not there (any more). ' if exc.code in (403, 404, 410) else ''}"
                                f"{manual_instructions(entry)}") from exc
        except (urllib.error.URLError, socket.timeout, OSError, HTTPException) as exc:  # HTTPException: bad reply
            _cleanup_empty(part)
            reason = getattr(exc, "reason", exc)
            slow = isinstance(reason, (socket.timeout, TimeoutError))
            raise DownloadError(
                (f"No answer from {url} within {timeout:g} s. " if slow else f"Cannot reach {url} ({reason}). ")
                + "Check the network or proxy (HTTPS_PROXY). " + manual_instructions(entry)) from exc
        with response:
            kind_of = (response.headers.get("Content-Type") or "").lower()
            if kind_of.startswith("text/html"):
                _cleanup_empty(part)
                raise DownloadError(f"{url} sent a web page instead of the model file (a sign-in, quota or "
                                    f"confirmation page). {manual_instructions(entry)}")
            if start and response.status == 206 and _range_start(response) == start:
                mode = "ab"
            else:
                start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else entry.size
            if entry.size is not None and total is not None and total != entry.size:
                _cleanup_empty(part)
                raise DownloadError(f"{url} offers {total:,} bytes but the authors' {entry.filename} has "
                                    f"{entry.size:,}; refusing it. {manual_instructions(entry)}")
            if total is not None:
                _check_space(part.parent, total - start, entry)
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            _write_meta(part, {"url": url, "validator": validator if validator and not validator.startswith("W/")
                               else None})
            _emit(events, {"event": "start", "kind": entry.kind, "filename": entry.filename, "url": url,
                           "total": total, "resumed_from": start})
            try:
                done = _stream(response, part, mode, start, total, entry, events, cancel)
            except (socket.timeout, TimeoutError, ConnectionError, HTTPException, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                    _drop(part)
                    raise _disk_error(exc, part.parent, entry) from exc
                received = (part.stat().st_size if part.is_file() else 0) - start
                if attempt < retries and received > 0:
                    attempt += 1
                    time.sleep(min(2.0 ** attempt * 0.25, 5.0))
                    continue  # resume from what arrived
                _cleanup_empty(part)
                raise DownloadError(
                    f"The download of {entry.filename} from {url} stopped ({type(exc).__name__}: {exc}); "
                    f"{part.stat().st_size if part.is_file() else 0:,} bytes are kept in {part} and the next "
                    f"'medsamkit models fetch {entry.kind}' resumes them. {manual_instructions(entry)}") from exc
        if total is not None and done < total:
            if attempt < retries:
                attempt += 1
                continue
            raise DownloadError(f"The server closed the connection after {done:,} of {total:,} bytes of "
                                f"{entry.filename}; they are kept in {part} and the next 'medsamkit models fetch "
                                f"{entry.kind}' resumes them. {manual_instructions(entry)}")
        return


def _stream(response, part, mode, start, total, entry, events, cancel) -> int:
    from ..progress import Cancelled

    done, t0, last = start, time.monotonic(), 0.0
    read = getattr(response, "read1", response.read)  # read1: what has arrived, so progress moves on slow links
    with open(part, mode) as out:
        while True:
            if cancel is not None and cancel():
                raise Cancelled(f"Download of {entry.filename} cancelled; {done:,} bytes are kept in {part} "
                                "and the next fetch resumes them.")
            block = read(CHUNK)
            if not block:
                break
            out.write(block)
            done += len(block)
            now = time.monotonic()
            if now - last >= 0.2 or (total is not None and done >= total):
                last = now
                speed = (done - start) / max(now - t0, 1e-6)
                _emit(events, {"event": "progress", "kind": entry.kind, "done": done, "total": total,
                               "speed": round(speed)})
        out.flush()
        os.fsync(out.fileno())
    return done


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range") or ""  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _check_space(folder: Path, needed: int, entry) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DownloadError(f"Not enough disk space in {folder}: {entry.filename} needs {needed / 1e6:,.0f} MB more, "
                            f"{free / 1e6:,.0f} MB are free. Free some space or set MEDSAMKIT_CACHE_DIR to another "
                            "disk.")


def _disk_error(exc: OSError, folder: Path, entry) -> MedSAMError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"The disk holding {folder} is full ({exc.strerror}); the partial {entry.filename} was "
                             "deleted. Free some space or set MEDSAMKIT_CACHE_DIR to another disk, then fetch again.")
    return CacheDirError(f"Cannot write to the model folder {folder} ({exc.strerror}). Set MEDSAMKIT_CACHE_DIR to a "
                         f"writable folder. {manual_instructions(entry)}")


def _drop(part: Path) -> None:
    for p in (part, _meta(part)):
        try:
            p.unlink()
        except OSError:
            pass


def _cleanup_empty(part: Path) -> None:
    """Remove a .part that holds nothing (and its note): a failed start leaves no file behind."""
    if part.is_file() and part.stat().st_size == 0:
        _drop(part)
    elif not part.is_file():
        _meta(part).unlink(missing_ok=True)


def _read_meta(part: Path) -> dict:
    try:
        return json.loads(_meta(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_meta(part: Path, meta: dict) -> None:
    _meta(part).write_text(json.dumps(meta), encoding="utf-8")


def _emit(events: EventFn | None, event: dict) -> None:
    if events is not None:
        events(event)


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
