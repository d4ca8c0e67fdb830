"""Is the model process still answering? A cheap health check, and a watchdog that runs it during a call.

A model process can stop answering without exiting: stopped (SIGSTOP, a debugger), deadlocked, or
swapped out for good. Its socket still accepts connections, so a prompt would wait its whole timeout
(minutes) and the next prompt would wait again on the same process. :func:`responds` asks
``GET /version`` (no token, no model work: the server answers it from a worker thread while the
model computes) with a timeout of seconds; :class:`Watchdog` asks it every ``interval`` seconds while
a call is in flight and, when a check goes unanswered, kills the process, which breaks the waiting
call at once. The caller (:class:`medsamkit.backend.process.ProcessBackend`) then starts a new
process and says so.
"""
from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

from .. import protocol

HEALTH_TIMEOUT_S = 5.0   # /version answers in milliseconds, also while the model computes
HEALTH_INTERVAL_S = 2.0  # a call in flight this long gets its first check
EXIT_GRACE_S = 2.0  # a killed multi-threaded process takes a moment before its exit status can be read


def responds(url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the server at ``url`` answers ``GET /version`` with 200 within ``timeout`` seconds
    (plain http.client: no proxy settings apply to the loopback check)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", protocol.PATH_VERSION)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Watchdog:
    """``with Watchdog(url, on_stall):`` runs :func:`responds` every ``interval`` s in a thread while the block
    runs; the first unanswered check calls ``on_stall()`` (which kills the process) and sets ``stalled``.
    ``exited(seconds)``, when given, says whether the process has exited (waiting up to ``seconds``): a
    check unanswered because the process died (killed, crashed) is not a stall, and the waiting call
    reports the exit itself."""

    def __init__(self, url: str, on_stall, interval: float = HEALTH_INTERVAL_S, timeout: float = HEALTH_TIMEOUT_S,
                 exited=None):
        self.url, self.on_stall, self.exited = url, on_stall, exited
        self.interval, self.timeout = float(interval), float(timeout)
        self.stalled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="medsamkit-model-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if not responds(self.url, self.timeout) and not self._done.is_set():
                if self.exited is not None and self.exited(EXIT_GRACE_S):
                    return  # it died rather than hung: the waiting call fails on its own and says how
                self.stalled = True
                self.on_stall()
                return
