"""One persistent worker thread for inference, polled by the GUI (no Qt here).

The effect submits :func:`medsamkit.mrml.interactive.run_request` here and polls :meth:`Job.done`
from a ``qt.QTimer`` on the main thread; when it is done, the main thread applies the result (MRML is
only touched there). One thread, not a pool: the engine (a Predictor with its embedding cache) is not
thread-safe, and one request at a time is what a user drawing boxes means. PyTorch releases the GIL
inside its kernels, so the main thread stays responsive while a slice is encoded.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Job:
    """A submitted call: poll :meth:`done`, then :meth:`result` (re-raises the call's exception)."""

    def __init__(self, future: Future, cancel_event: threading.Event, label: str):
        self.future = future
        self.label = label
        self._cancel = cancel_event
        self._lock = threading.Lock()
        self._progress = (0, 0, "")

    def cancel(self) -> None:
        """Ask the call to stop at its next check (engine functions poll ``cancel()``)."""
        self._cancel.set()
        self.future.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None):
        return self.future.result(timeout)

    def progress(self) -> tuple[int, int, str]:
        """Latest (done, total, text) reported by the call; safe from any thread."""
        with self._lock:
            return self._progress

    def _report(self, done: int, total: int, text: str = "") -> None:
        with self._lock:
            self._progress = (done, total, text)


class Worker:
    """A single background thread running one job after another."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medsam-worker")
        self.current: Job | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.done()

    def submit(self, fn: Callable, *args, label: str = "", **kwargs) -> Job:
        """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` on the worker thread."""
        event = threading.Event()
        job = Job(Future(), event, label)  # placeholder future: the call may start before submit returns

        def call():
            return fn(*args, progress=job._report, cancel=event.is_set, **kwargs)

        job.future = self._executor.submit(call)
        self.current = job
        return job

    def shutdown(self, cancel: bool = True) -> None:
        if cancel and self.current is not None:
            self.current.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
