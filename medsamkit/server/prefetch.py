"""View prefetch: encode the slice a user is looking at before they prompt it (the instant first box).

``POST /sessions/{sid}/prefetch {"slice_index": k, "axis": a}`` answers at once (202) and queues
"encode slice k along axis a of the session's volume" for one background thread. Only the newest
request waits: a request arriving before the previous one started supersedes it (the user scrolled
on), so stale slices are never encoded. The thread takes the session's lock without waiting (a
session busy with a prompt or a long job is not prefetched: the user is already working there),
then makes that slice the session predictor's current image, which encodes it on the shared
ModelThread on an embedding-cache miss. A prompt on the slice arriving meanwhile waits for the
session lock and finds the embedding in the cache, so it costs only the decoder; memory stays
bounded by the session's embedding cache (--session cache bytes, 16 LiteMedSAM slices).

Counts (requested, encoded, cached, superseded, skipped_busy, failed) are reported under
``"prefetch"`` in GET /stats, next to the model's ``encoder_calls``: tests count encodings instead
of timing them.
"""
from __future__ import annotations

import logging
import threading
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .. import protocol

log = logging.getLogger("medsamkit.server")


class PrefetchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slice_index: Annotated[int, Field(ge=0)]
    axis: Annotated[int, Field(ge=0, le=2)] = 0


class Prefetcher:
    """One background thread encoding the newest requested (session, slice, axis)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._pending = None
        self._closed = False
        self._busy = False
        self._counts = dict.fromkeys(("requested", "encoded", "cached", "superseded", "skipped_busy", "failed"), 0)
        self._thread = threading.Thread(target=self._run, name="medsamkit-prefetch", daemon=True)
        self._thread.start()

    def request(self, session, slice_index: int, axis: int) -> None:
        with self._cv:
            self._counts["requested"] += 1
            if self._pending is not None:
                self._counts["superseded"] += 1
            self._pending = (session, int(slice_index), int(axis))
            self._cv.notify()

    def stats(self) -> dict:
        with self._cv:
            return dict(self._counts, pending=self._pending is not None, running=self._busy)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._pending = None
            self._cv.notify()

    def _count(self, name: str) -> None:
        with self._cv:
            self._counts[name] += 1

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._count(self._encode(*job))
            except Exception:  # a bad session must not stop prefetching for the others
                log.exception("prefetch failed")
                self._count("failed")
            finally:
                with self._cv:
                    self._busy = False

    @staticmethod
    def _encode(session, slice_index: int, axis: int) -> str:
        if not session.lock.acquire(blocking=False):
            return "skipped_busy"
        try:
            if session.closed:
                return "skipped_busy"
            cache = session.backend.predictor.cache
            misses = cache.misses  # this session's cache, used only under its lock: an exact count
            session.backend.select(slice_index, axis)
            return "encoded" if cache.misses != misses else "cached"
        finally:
            session.lock.release()


def add_prefetch_routes(app, store) -> Prefetcher:
    """Register POST /sessions/{sid}/prefetch on ``app``; returns the Prefetcher (for /stats)."""
    prefetcher = Prefetcher()

    @app.post(protocol.PATH_SESSIONS + "/{sid}/prefetch", status_code=202)
    def prefetch(sid: str, req: PrefetchRequest) -> dict:
        session = store.get(sid)
        session.backend.slice_hw(req.slice_index, req.axis)  # a volume and an index in range, else 400 now
        prefetcher.request(session, req.slice_index, req.axis)
        return {"queued": True}

    return prefetcher
