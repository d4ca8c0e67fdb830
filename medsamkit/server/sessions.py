"""Server sessions: one uploaded image/volume + its engine state, bounded in count, bytes and idle time.

A session is a :class:`~medsamkit.backend.local.LocalBackend` (its own predictor and embedding
cache, sharing the one loaded model through the GPU lock) plus the last few predictions' low-res
logits (so a refinement click sends an id, not 256 KB of floats) and uploaded mask prompts.
Session ids are 128-bit random, so one client cannot guess another's session; nothing is shared
between sessions except the read-only network weights.

Locks, always taken in this order: the session's own lock (one request at a time per session,
so a client cannot tear its own state), then the store lock (dict bookkeeping only, never held
while computing). Model calls of all sessions queue on one ModelThread (backend/local.py), one
call per slice, so a long job's slices interleave with other sessions' clicks.
"""
from __future__ import annotations

import ctypes
import gc
import math
import secrets
import sys
import threading
import time
from collections import OrderedDict

import numpy as np

from ..backend.local import LocalBackend, ModelThread
from ..embedding_cache import EmbeddingCache
from .. import protocol

MAX_PREDICTIONS_PER_SESSION = 16  # 16 x 256 KB of LiteMedSAM low-res logits = 4 MiB
MAX_MASKS_PER_SESSION = 4


class SessionUnknown(Exception):
    """No such session (never existed, closed or expired): HTTP 404."""


class PredictionUnknown(Exception):
    """No such prediction/mask id in the session (evicted or never existed): HTTP 404."""


class StoreFull(Exception):
    """Session count or memory limit reached: HTTP 503."""


class Reservation:
    """A place (and bytes) claimed for a session being created; spent by ``add`` or given back."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.active = True


class Session:
    def __init__(self, sid: str, backend: LocalBackend, budget: int = 0, clock=time.monotonic):
        self.sid = sid
        self.clock = clock
        self.backend = backend
        self.budget = int(budget)  # bytes this session may come to hold (admission control)
        self.lock = threading.Lock()
        self.created = self.last_seen = clock()
        self.predictions: OrderedDict[str, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()
        self.masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cancel_event = threading.Event()
        self.progress: tuple[int, int, str] = (0, 0, "")
        self.closed = False

    def check_open(self) -> None:
        """Call with the session lock held: a session closed while the request waited is gone."""
        if self.closed:
            raise SessionUnknown(f"Session '{self.sid[:8]}…' was closed.")

    def touch(self) -> None:
        self.last_seen = self.clock()

    def remember_prediction(self, low_res: np.ndarray, hw: tuple[int, int]) -> str:
        pid = secrets.token_hex(8)
        self.predictions[pid] = (np.ascontiguousarray(low_res, dtype=np.float32), tuple(hw))
        while len(self.predictions) > MAX_PREDICTIONS_PER_SESSION:
            self.predictions.popitem(last=False)
        return pid

    def prediction(self, pid: str) -> tuple[np.ndarray, tuple[int, int]]:
        try:
            return self.predictions[pid]
        except KeyError:
            raise PredictionUnknown(f"Prediction '{pid}' is not (or no longer) held by this session.") from None

    def remember_mask(self, logits: np.ndarray) -> str:
        mid = secrets.token_hex(8)
        self.masks[mid] = logits
        while len(self.masks) > MAX_MASKS_PER_SESSION:
            self.masks.popitem(last=False)
        return mid

    def mask(self, mid: str) -> np.ndarray:
        try:
            return self.masks[mid]
        except KeyError:
            raise PredictionUnknown(f"Mask prompt '{mid}' is not (or no longer) held by this session.") from None

    @property
    def nbytes(self) -> int:
        n = self.backend.nbytes
        # list(): a snapshot, as the session's own request thread may be adding entries meanwhile
        n += sum(low.nbytes for low, _ in list(self.predictions.values()))
        n += sum(m.nbytes for m in list(self.masks.values()))
        return n

    def free(self) -> None:
        self.closed = True
        self.cancel_event.set()
        self.backend.close()
        self.predictions.clear()
        self.masks.clear()


class SessionStore:
    """Thread-safe sid -> Session map with limits and idle expiry (``clock``: seconds, time.monotonic by
    default; tests pass their own to expire sessions without waiting)."""

    def __init__(self, model, model_thread: ModelThread, max_sessions: int = protocol.DEFAULT_MAX_SESSIONS,
                 ttl_s: float = protocol.DEFAULT_SESSION_TTL_S,
                 max_session_bytes: int = protocol.DEFAULT_MAX_SESSION_BYTES,
                 max_total_bytes: int = protocol.DEFAULT_MAX_TOTAL_BYTES,
                 cache_bytes: int = protocol.DEFAULT_SESSION_CACHE_BYTES, clock=time.monotonic):
        self.model = model
        self.clock = clock
        self.model_thread = model_thread
        self.max_sessions = int(max_sessions)
        self.ttl_s = float(ttl_s)
        self.max_session_bytes = int(max_session_bytes)
        self.max_total_bytes = int(max_total_bytes)
        self.cache_bytes = int(cache_bytes)
        self._sessions: dict[str, Session] = {}
        self._reserved = 0  # bytes promised to sessions being created (decode in progress)
        self._pending = 0   # sessions being created: they count against max_sessions from reserve() on
        self._mu = threading.Lock()
        self.created_count = 0

    def budget(self, shape: tuple, itemsize: int, is_volume: bool) -> int:
        """Most bytes a session on this array can come to hold: the array (and, for a 2D image, its
        (H, W, 3) display copy), a full embedding cache, and its kept logits and mask prompts."""
        n = int(itemsize) * math.prod(shape)
        if not is_volume:
            n += 3 * int(shape[0]) * int(shape[1] if len(shape) > 1 else 1)
        side = int(getattr(self.model, "low_res_size", 256))
        return n + self.cache_bytes + (MAX_PREDICTIONS_PER_SESSION + MAX_MASKS_PER_SESSION) * side * side * 4

    def reserve(self, budget: int) -> Reservation:
        """Claim a place and room for a new session before decoding its upload; StoreFull if over a limit.

        Check and claim happen under one lock, so concurrent creates can never pass the limit together;
        the returned Reservation is spent by :meth:`add` or given back by :meth:`release_reservation`.
        """
        self.sweep()
        with self._mu:
            if len(self._sessions) + self._pending >= self.max_sessions:
                raise StoreFull(f"The server already holds {self.max_sessions} sessions (its limit); close one, "
                                "wait for idle ones to expire, or restart it with a larger --max-sessions.")
            held = sum(s.budget for s in self._sessions.values()) + self._reserved
            if held + budget > self.max_total_bytes:
                raise StoreFull(f"The server has promised {held / 2**20:.0f} MiB to open sessions; this one may need "
                                f"{budget / 2**20:.0f} MiB more, over its {self.max_total_bytes / 2**20:.0f} MiB limit "
                                "(--max-memory-mb). Close other sessions or try again later.")
            self._reserved += budget
            self._pending += 1
            return Reservation(budget)

    def release_reservation(self, reservation: Reservation) -> None:
        """Give back a reservation that :meth:`add` did not spend (the create failed); idempotent."""
        with self._mu:
            self._release(reservation)

    def _release(self, reservation: Reservation) -> None:
        if reservation.active:
            reservation.active = False
            self._reserved = max(0, self._reserved - reservation.budget)
            self._pending = max(0, self._pending - 1)

    def add(self, backend: LocalBackend, budget: int = 0, reservation: Reservation | None = None) -> Session:
        """Register a session; with ``reservation`` the reserved place becomes the session (one step)."""
        sid = secrets.token_urlsafe(16)
        session = Session(sid, backend, budget, self.clock)
        with self._mu:
            if reservation is not None:
                self._release(reservation)
            self._sessions[sid] = session
            self.created_count += 1
        return session

    def new_backend(self) -> LocalBackend:
        from ..backend import open_backend

        return open_backend("local", model=self.model, cache_bytes=self.cache_bytes, model_thread=self.model_thread)

    def get(self, sid: str) -> Session:
        with self._mu:
            session = self._sessions.get(sid)
        if session is None or self._expired(session):
            if session is not None:
                self.close(sid)
            raise SessionUnknown(f"Session '{sid[:8]}…' is unknown: it was closed, expired after "
                                 f"{self.ttl_s:g} s without requests, or the server restarted.")
        session.touch()
        return session

    def close(self, sid: str) -> bool:
        with self._mu:
            session = self._sessions.pop(sid, None)
        if session is None:
            return False
        session.closed = True       # requests waiting for its lock give up (check_open)
        session.cancel_event.set()  # a long job in flight stops at its next slice
        with session.lock:
            session.free()
        _return_memory_to_os()
        return True

    def _expired(self, session: Session) -> bool:
        return self.clock() - session.last_seen > self.ttl_s

    def sweep(self) -> int:
        with self._mu:
            stale = [sid for sid, s in self._sessions.items() if self._expired(s) and not s.lock.locked()]
        return sum(self.close(sid) for sid in stale)

    def close_all(self) -> None:
        with self._mu:
            sids = list(self._sessions)
        for sid in sids:
            self.close(sid)

    def stats(self) -> dict:
        with self._mu:
            sessions = list(self._sessions.values())
        return {"sessions": len(sessions), "bytes": sum(s.nbytes for s in sessions),
                "budget_bytes": sum(s.budget for s in sessions),
                "max_sessions": self.max_sessions, "max_total_bytes": self.max_total_bytes,
                "session_ttl_s": self.ttl_s, "sessions_created": self.created_count,
                "encoder_calls": int(getattr(self.model, "encoder_calls", 0))}


def _return_memory_to_os() -> None:
    """Free a closed session's arrays now and hand the heap back to the OS.

    glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in the process
    heap, so without malloc_trim the RSS of a long-running server only ever grows.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc: nothing to trim
            pass
