"""The model as the effect and the batch see it, and the one worker thread that talks to it.

:class:`ModelSession` is a ``medsamkit.backend`` Backend plus what the MRML layer needs: which volume
it holds, keyed by (volume node ID, voxel MTime) and the intensity mapping. A volume travels to the
backend once; each click then names a slice (index + axis), propagation and markers reuse the same
upload, and a view prefetch (the instant first box) is a few bytes. The effect's session opens its
backend from the effect's options (:meth:`ModelSession.open`, on the worker thread: starting a model
process takes seconds) and opens a new one when the options change; tests and the batch hand it a
backend. For the effect "local" is a model process it starts itself
(:class:`medsamkit.backend.process.ProcessBackend`: Slicer's process never imports torch, and a
crash of the model never takes Slicer down); a URL is a server. Every backend is reached through
:func:`medsamkit.backend.open_backend`.

:class:`Worker` is one persistent thread that runs :func:`medsamkit.mrml.interactive.run_request`
on the session, polled by the GUI (no Qt here). The effect polls :meth:`Job.done` from a
``qt.QTimer`` on the main thread; when it is done, the main thread applies the result (MRML is only
touched there). One thread, not a pool: a session holds one volume state, and one request at a time
is what a user drawing boxes means. The model runs in another process (a model process or a server);
this thread sends requests and waits on a socket.

Inside Slicer the main thread holds the GIL while Qt's event loop runs (in C++, between Python
slots), so this thread can only take the GIL back after a wait while the main thread runs Python
that releases it. :meth:`Worker.wait` is that release: the effect's short timer calls it while a job
is :attr:`Worker.pending`, and the main thread blocks there (the GIL free) until a job ends or a few
milliseconds pass. Nothing runs on the main thread while nothing is pending.

Background jobs (:meth:`Worker.submit_background`, the view prefetch) queue on the same thread
without becoming the current job, so a prompt is never refused because of one; a newer background
job replaces one that has not started. A cancelled job never yields a result: :meth:`Job.result`
raises Cancelled even if the call finished, so nothing is written after Cancel.

A session is not thread-safe: the effect drives it from its one worker thread; the main thread only
reads :meth:`ModelSession.holds_volume`.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable

from ..errors import InputError
from ..progress import CancelFn, Cancelled, ProgressFn, check_cancel


class ModelSession:
    """A Backend and the key of the volume it holds (see the module docstring).

    ``backend``: a Backend to use as it is (tests, the batch); without one, :meth:`open` opens one
    from the effect's options through ``opener`` (default :func:`open_model_backend`).
    """

    def __init__(self, backend=None, opener=None):
        self.backend = backend
        self._opener = None if backend is not None else (opener or open_model_backend)
        self._options = None  # the options the backend was opened with
        self._held = None  # (volume key, Normalization.key) of the volume set on the backend

    def open(self, Model="litemedsam", CheckpointPath="", Device="auto", Backend="local", ServerTokenFile="",
             Adapter="", Engine="auto", progress: ProgressFn = None, cancel: CancelFn = None) -> "ModelSession":
        """Worker thread: this session with a backend for the effect's options (its parameter names:
        Model, CheckpointPath, Adapter, Device, Engine, Backend, ServerTokenFile). The backend is opened
        on first use, and again when the options change (the previous one is closed: its model process
        stops); a model process is started now, telling ``progress``. A session made with a backend
        keeps it whatever the options."""
        if self._opener is None:
            return self
        options = (Model, CheckpointPath, Adapter, Engine, Device, Backend, ServerTokenFile)
        if self.backend is None or options != self._options:
            if self.backend is not None:
                self.close()
            backend = self._opener(Backend or "local", Model or None, CheckpointPath or None, Adapter or None,
                                   Engine or "auto", Device or "auto", token_file=ServerTokenFile or None)
            if hasattr(backend, "start"):  # a model process: start it now, telling the user
                try:
                    backend.start(progress, cancel)
                except BaseException:
                    backend.close()
                    raise
            self.backend, self._options = backend, options
        return self

    @property
    def description(self) -> str:
        info = self.backend.info()
        engine = info.extra.get("engine")
        where = (f"remote {info.url}" if info.remote else
                 "model process" if info.extra.get("process") else "in this process")
        return f"{info.kind} on {info.device}" + (f", {engine}" if engine else "") + f" ({where})"

    def holds_volume(self, volume_key, normalization=None) -> bool:
        """True if the backend holds the volume ``volume_key`` (with ``normalization``'s mapping, if given)."""
        if volume_key is None or self._held is None or self._held[0] != volume_key:
            return False
        return normalization is None or self._held[1] == normalization.key

    def use_volume(self, volume_key, volume, normalization) -> None:
        """Set ``volume`` on the backend unless it holds it already (same key and mapping)."""
        key = (volume_key, normalization.key)
        if volume_key is not None and key == self._held:
            return
        if volume is None:
            raise InputError("The volume changed since the prompt was drawn; prompt again.")
        self._held = None
        self.backend.set_volume(volume, normalization)
        self._held = key if volume_key is not None else None

    def segment_view(self, request, cancel: CancelFn = None):
        """Predict on slice ``request.prompt.view`` of the request's volume (a SliceRequest).

        The volume travels only if the backend does not hold it; without the volume in the request
        (it changed on the backend meanwhile, e.g. another window) the slice alone is sent. The prompt
        is checked once, by the backend (the same InputError everywhere).
        """
        p = request.prompt
        check_cancel(cancel)
        if request.volume is not None or self.holds_volume(request.volume_key, request.normalization):
            self.use_volume(request.volume_key, request.volume, request.normalization)
            check_cancel(cancel)
            return self.backend.predict(box=p.box, points=p.points, point_labels=p.labels,
                                        mask_input=request.mask_input, slice_index=p.view.index, axis=p.view.axis)
        self._held = None
        self.backend.set_image(request.image, request.normalization)
        check_cancel(cancel)
        return self.backend.predict(box=p.box, points=p.points, point_labels=p.labels, mask_input=request.mask_input)

    def segment_plan(self, volume, plan, normalization, refine: bool = False, progress: ProgressFn = None,
                     cancel: CancelFn = None, volume_key=None):
        """Markers: every slice of a BoxPlan with its box -> VolumeSegmentation."""
        self.use_volume(volume_key, volume, normalization)
        return self.backend.segment_plan(plan, refine=refine, progress=progress, cancel=cancel)

    def propagate(self, volume, slice_index, axis, box=None, points=None, point_labels=None, normalization=None,
                  progress: ProgressFn = None, cancel: CancelFn = None, volume_key=None):
        """Prompts on one slice, carried through the volume -> VolumeSegmentation."""
        self.use_volume(volume_key, volume, normalization)
        return self.backend.propagate(slice_index, axis, box=box, points=points, point_labels=point_labels,
                                      progress=progress, cancel=cancel)

    def prefetch(self, volume_key, view, volume=None, normalization=None) -> bool:
        """Have the backend encode slice ``view`` in the background (True if it took the request).

        Sets the volume first when the request carries it; a backend without ``prefetch`` (in
        process: nothing runs in the background there) answers False.
        """
        if volume is not None:
            self.use_volume(volume_key, volume, normalization)
        if not self.holds_volume(volume_key, normalization) or not hasattr(self.backend, "prefetch"):
            return False
        return bool(self.backend.prefetch(view.index, view.axis))

    def close(self) -> None:
        """Close the backend (a model process this session started stops); :meth:`open` opens a new one."""
        backend, self._held, self._options = self.backend, None, None
        if self._opener is not None:
            self.backend = None
        if backend is not None:
            backend.close()


def open_model_backend(backend: str = "local", model: str | None = None, checkpoint: str | None = None,
                       adapter: str | None = None, engine: str | None = "auto", device: str | None = "auto",
                       token_file=None, timeout: float | None = None):
    """The Backend for the effect's options through :func:`medsamkit.backend.open_backend`: the effect's
    "local" is a model process (spec "process"); a URL is that server, whose model is its own (a model,
    checkpoint or adapter other than the default is refused rather than silently ignored)."""
    from ..backend import open_backend

    spec = "process" if backend in (None, "", "local") else backend
    return open_backend(spec, model=model or None, checkpoint=checkpoint or None, adapter=adapter or None,
                        engine=engine or "auto", device=device or "auto", token_file=token_file or None,
                        timeout=timeout)


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
