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
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError, DependencyError, MedSAMError
from ..fast.artifacts import CacheDirError, cache_dir
from .catalog import CatalogEntry, get_entry, load_catalog

ACCEPT_ENV = "MEDSAMKIT_ACCEPT_LICENCES"
TIMEOUT_ENV = "MEDSAMKIT_DOWNLOAD_TIMEOUT"
CHUNK = 1 << 20
EventFn = Callable[[dict], None]


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
    except OSError:
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
        except (urllib.error.URLError, socket.timeout, OSError) as exc:
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


# ---------------------------------------------------------------------------------------- lock

class FileLock:
    """An exclusive OS lock on ``path`` shared by processes (flock / msvcrt); the file is removed on release.

    on_wait is called once when another process holds the lock. After locking, the path is checked to
    still name the locked file (a releasing holder unlinks it), so two processes never both hold it.
    """

    def __init__(self, path: Path, on_wait: Callable[[], None] | None = None, poll: float = 0.2):
        self.path, self.on_wait, self.poll, self.fd = Path(path), on_wait, poll, None

    def __enter__(self):
        waited = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd):
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except OSError:
                    same = False
                if same:
                    self.fd = fd
                    return self
                _unlock(fd)
            os.close(fd)
            if not waited and self.on_wait is not None:
                self.on_wait()
            waited = True
            time.sleep(self.poll)

    def __exit__(self, *exc):
        try:
            self.path.unlink()
        except OSError:
            pass
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd) -> None:
        try:
            os.lseek(fd, 0, 0)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import fcntl

    def _try_lock(fd) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------- progress sinks

class JsonLines:
    """Events as one JSON object per line on a stream (``--progress json``: what the Slicer dialog reads)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


class TqdmBytes:
    """Events as a tqdm bar with size and speed (the CLI on a terminal); plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream, self.bar = stream or sys.stderr, None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=event["total"], initial=event["resumed_from"], unit="B", unit_scale=True,
                            unit_divisor=1024, desc=event["filename"], file=self.stream, leave=True)
            if event["resumed_from"]:
                self.bar.write(f"resuming {event['filename']} at {event['resumed_from']:,} bytes", file=self.stream)
        elif kind == "progress" and self.bar is not None:
            self.bar.update(event["done"] - self.bar.n)
        elif kind == "waiting":
            print(f"{event['kind']}: {event['message']}; waiting for it", file=self.stream)
        elif kind == "verify":
            self.close()
            print(f"{event['kind']}: verifying {Path(event['path']).name}", file=self.stream)
        elif kind == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def default_events() -> EventFn:
    """The sink used when the caller gives none (load_model): a bar on a terminal, else lines on stderr."""
    return TqdmBytes(sys.stderr) if sys.stderr.isatty() else _LogLines()


class _LogLines:
    def __init__(self):
        self.next_pct = 0

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            total = event["total"]
            print(f"downloading {event['filename']} ({'%.0f MB' % (total / 1e6) if total else 'size unknown'}) "
                  f"from {event['url']}", file=sys.stderr, flush=True)
            self.next_pct = 0
        elif kind == "progress" and event["total"]:
            pct = 100 * event["done"] // event["total"]
            if pct >= self.next_pct:
                print(f"  {pct}% ({event['speed'] / 1e6:.1f} MB/s)", file=sys.stderr, flush=True)
                self.next_pct = pct + 10
        elif kind in ("waiting", "verify", "done"):
            text = event.get("message") or event.get("path", "")
            print(f"{event['kind']}: {kind} {text}", file=sys.stderr, flush=True)
