"""One persistent worker thread that talks to the model, polled by the GUI (no Qt here).

The effect submits :func:`medsamkit.mrml.interactive.run_request` here and polls :meth:`Job.done`
from a ``qt.QTimer`` on the main thread; when it is done, the main thread applies the result (MRML is
only touched there). One thread, not a pool: a model session holds one volume state, and one request
at a time is what a user drawing boxes means. The model itself runs in another process (a model
process or a server); this thread sends requests and waits on a socket.

Inside Slicer the main thread holds the GIL while Qt's event loop runs (in C++, between Python
slots), so this thread can only take the GIL back after a wait while the main thread runs Python
that releases it. :meth:`Worker.wait` is that release: the effect's short timer calls it while a job
is :attr:`Worker.pending`, and the main thread blocks there (the GIL free) until a job ends or a few
milliseconds pass. Nothing runs on the main thread while nothing is pending.

Background jobs (:meth:`Worker.submit_background`, the view prefetch) queue on the same thread
without becoming the current job, so a prompt is never refused because of one; a newer background
job replaces one that has not started. A cancelled job never yields a result: :meth:`Job.result`
raises Cancelled even if the call finished, so nothing is written after Cancel.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
        """The call's return value; raises its exception, or Cancelled once :meth:`cancel` was called
        (even if the call had already finished: a cancelled result must never be applied)."""
        value = None
        if not self.future.cancelled():
            try:
                value = self.future.result(timeout)
            except Exception:
                if not self.cancelled or not self.future.done():
                    raise  # a timeout while the call still runs stays a timeout
        if self.cancelled:
            from ..progress import Cancelled

            raise Cancelled(f"Cancelled{': ' + self.label if self.label else ''}; nothing was written.")
        return value

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
        self.background: Job | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.done()

    @property
    def pending(self) -> bool:
        """A job (the current one or a background one) has not finished."""
        return any(job is not None and not job.done() for job in (self.current, self.background))

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds, the GIL released, until a pending job finishes: the
        worker thread runs meanwhile even where the caller's thread otherwise holds the GIL (see the
        module docstring). True if no job is pending any more or one finished."""
        futures = [job.future for job in (self.current, self.background) if job is not None and not job.done()]
        if not futures:
            return True
        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return bool(done)

    def submit(self, fn: Callable, *args, label: str = "", **kwargs) -> Job:
        """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` on the worker thread."""
        event = threading.Event()
        job = Job(Future(), event, label)  # placeholder future: the call may start before submit returns

        def call():
            return fn(*args, progress=job._report, cancel=event.is_set, **kwargs)

        job.future = self._executor.submit(call)
        self.current = job
        return job

    def submit_background(self, fn: Callable, *args, label: str = "", **kwargs) -> Job:
        """Like :meth:`submit`, for work nobody waits for (a prefetch): it does not make the worker
        busy, and it cancels the previous background job if that has not finished."""
        if self.background is not None and not self.background.done():
            self.background.cancel()
        current = self.current
        job = self.submit(fn, *args, label=label, **kwargs)
        self.current, self.background = current, job
        return job

    def shutdown(self, cancel: bool = True) -> None:
        for job in (self.current, self.background):
            if cancel and job is not None:
                job.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
