"""Bringing one model file over HTTP(S) into ``<name>.part``: resumable, timed, refused early when wrong.

A dropped connection is resumed with an HTTP ``Range`` request (``If-Range`` guards against a changed
file); a ``.part`` left by an interrupted run is resumed by the next run (``<name>.part.json`` notes its
URL and the server's validator). A web page instead of the file, a size other than the published one, or
too little disk space is refused before the bytes are kept. Proxies come from the environment
(``HTTPS_PROXY``/``NO_PROXY``; urllib reads them); every network wait has a timeout. Checking the
finished file and putting it in place is :mod:`medsamkit.models.download`'s work.
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

from ..errors import MedSAMError
from ..fast.artifacts import CacheDirError
from .model_folder import _emit, manual_instructions

CHUNK = 1 << 20


class DownloadError(MedSAMError):
    """A model file could not be downloaded or verified; nothing unverified was left under its name."""


def _meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _fetch_url(url, part, entry, events, timeout, retries, cancel) -> None:
    """Bring ``part`` to the complete file from ``url``, resuming it across dropped connections."""
    attempt = 0
    while True:
        opened = _open(url, part, entry, timeout)
        if opened is None:
            continue
        response, start = opened
        with response:
            start, mode, total = _accept(response, url, part, start, entry, events)
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


def _open(url, part, entry, timeout):
    """Ask ``url`` for the file from where ``part`` ends -> (response, that offset); None when the server does
    not know that offset (HTTP 416): ``part`` is deleted and the caller asks again from the start."""
    from .. import __version__

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
        return urllib.request.urlopen(request, timeout=timeout), start
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # our part is not a prefix the server knows: start again
            part.unlink()
            return None
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


def _accept(response, url, part, start, entry, events) -> "tuple[int, str, int | None]":
    """Check the server's answer before any of its bytes is kept -> (offset the bytes go to, file mode, total
    size or None). Refuses a web page, a size other than the published one and a disk without room."""
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
    return start, mode, total


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
