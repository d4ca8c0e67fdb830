"""One persistent worker thread per backend: the GUI submits, polls, and never blocks.

The Slicer effect submits every backend call (set_volume, predict, propagate, ...) to a
:class:`BackendWorker`, polls ``job.done()`` and ``job.progress`` from a timer on the main thread,
and applies ``job.result()`` there as one undo step. All calls run in submission order on the
same thread, so the backend (which holds one image state and is not thread-safe) is only ever
touched by that thread.

Cancelling: ``job.cancel()`` drops a job that has not started; a running job sees
``job.cancel_requested()`` turn true through the ``cancel`` callable it was given (engine long
operations check it between slices and raise :class:`~medsamkit.progress.Cancelled`).
``submit(..., replace_key="click")`` cancels still-queued jobs with the same key first, so a burst
of clicks runs only the newest one (the older ones' results would be overwritten anyway).
"""
from __future__ import annotations

import inspect
import queue
import threading
from concurrent.futures import CancelledError, Future

from ..progress import Cancelled


class Job:
    """A submitted call: a Future plus cancel and progress state shared with the worker thread."""

    def __init__(self, fn, args, kwargs, key: str | None):
        self.fn, self.args, self.kwargs, self.key = fn, args, kwargs, key
        self.future: Future = Future()
        self._cancel = threading.Event()
        self.progress: tuple[int, int, str] = (0, 0, "")  # (done, total, text), last reported

    def cancel(self) -> bool:
        """Ask the job to stop. True if it had not started (it never will)."""
        self._cancel.set()
        return self.future.cancel()

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None):
        """The call's return value; re-raises its exception, or Cancelled if it was cancelled."""
        try:
            return self.future.result(timeout)
        except CancelledError:
            raise Cancelled("Cancelled by the user; nothing was changed.") from None

    def _report(self, done: int, total: int, text: str = "") -> None:
        self.progress = (int(done), int(total), str(text))


_STOP = object()


class BackendWorker:
    """A daemon thread running submitted calls one at a time, in order."""

    def __init__(self, name: str = "medsamkit-worker"):
        self._queue: "queue.Queue" = queue.Queue()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._mu = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args, replace_key: str | None = None, **kwargs) -> Job:
        """Queue ``fn(*args, **kwargs)``. If ``fn`` takes ``progress``/``cancel`` keywords they are
        supplied (unless given), wired to ``job.progress`` and ``job.cancel()``."""
        if self._closed:
            raise RuntimeError("This worker was shut down; create a new one.")
        job = Job(fn, args, kwargs, replace_key)
        with self._mu:
            if replace_key is not None:
                for old in self._pending:
                    if old.key == replace_key:
                        old.cancel()
            self._pending.append(job)
        self._queue.put(job)
        return job

    def shutdown(self, wait: bool = True, timeout: float | None = 10.0) -> None:
        """Cancel what is queued, ask the running job to stop, and end the thread."""
        self._closed = True
        with self._mu:
            for job in self._pending:
                job.cancel()
            if self._running is not None:
                self._running._cancel.set()
        self._queue.put(_STOP)
        if wait:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        with self._mu:
            return self._running is not None or any(not j.done() for j in self._pending)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            with self._mu:
                if job in self._pending:
                    self._pending.remove(job)
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                self._running = job
            kwargs = dict(job.kwargs)
            params = _keyword_names(job.fn)
            if "progress" in params and "progress" not in kwargs:
                kwargs["progress"] = job._report
            if "cancel" in params and "cancel" not in kwargs:
                kwargs["cancel"] = job.cancel_requested
            error, result = None, None
            try:
                result = job.fn(*job.args, **kwargs)
            except BaseException as exc:  # delivered to the caller through the future, never lost
                error = exc
            with self._mu:
                self._running = None
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)


def _keyword_names(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()
