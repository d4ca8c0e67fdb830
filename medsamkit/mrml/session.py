"""The model as the effect and the batch see it: a ``medsamkit.backend`` Backend plus the volume it holds.

Every face reaches a model through a Backend. For the Slicer effect "local" is a model process the
effect starts itself (:class:`medsamkit.backend.process.ProcessBackend`: Slicer's process never
imports torch, and a crash of the model never takes Slicer down); a URL is a server
(:class:`medsamkit.backend.remote.RemoteBackend`). Tests and benchmarks may pass an in-process
:class:`medsamkit.backend.local.LocalBackend`: the calls are the same.

:class:`ModelSession` adds what the MRML layer needs: which volume the backend holds, keyed by
(volume node ID, voxel MTime) and the intensity mapping. A volume travels to the backend once; each
click then names a slice (index + axis), propagation and markers reuse the same upload, and a view
prefetch (the instant first box) is a few bytes. :class:`SessionHolder` builds the session for the
effect's options on the worker thread on first use and rebuilds it when the options change.

Not thread-safe: the effect drives one session from its one worker thread (jobs.Worker).
"""
from __future__ import annotations

from ..errors import InputError
from ..progress import CancelFn, ProgressFn, check_cancel
from ..prompts import make_prompt


class ModelSession:
    """A Backend and the key of the volume it holds (see the module docstring)."""

    def __init__(self, backend):
        self.backend = backend
        self._held = None  # (volume key, Normalization.key) of the volume set on the backend

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
        (it changed on the backend meanwhile, e.g. another window) the slice alone is sent.
        """
        p = request.prompt
        make_prompt(tuple(request.image.shape[:2]), p.box, p.points, p.labels, None)  # before any upload
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
        self._held = None
        self.backend.close()


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


class SessionHolder:
    """The effect's model session, built on the worker thread on first use (starting a model process
    takes seconds) and again when the options change; ``close()`` stops its model process.

    Options are the effect's parameter names: Model, CheckpointPath, Adapter, Device, Engine,
    Backend, ServerTokenFile. Only the worker thread calls :meth:`get`.
    """

    def __init__(self, opener=open_model_backend):
        self.session: ModelSession | None = None
        self.key = None
        self._opener = opener

    def get(self, Model="litemedsam", CheckpointPath="", Device="auto", Backend="local", ServerTokenFile="",
            Adapter="", Engine="auto", progress: ProgressFn = None, cancel: CancelFn = None) -> ModelSession:
        key = (Model, CheckpointPath, Adapter, Engine, Device, Backend, ServerTokenFile)
        if self.session is None or key != self.key:
            self.close()
            backend = self._opener(Backend or "local", Model or None, CheckpointPath or None, Adapter or None,
                                   Engine or "auto", Device or "auto", token_file=ServerTokenFile or None)
            if hasattr(backend, "start"):  # a model process: start it now, telling the user
                try:
                    backend.start(progress, cancel)
                except BaseException:
                    backend.close()
                    raise
            self.session, self.key = ModelSession(backend), key
        return self.session

    def holds_volume(self, volume_key, normalization=None) -> bool:
        """Main thread: does the current session hold this volume? (False before the first run.)"""
        session = self.session
        return session is not None and session.holds_volume(volume_key, normalization)

    def close(self) -> None:
        session, self.session, self.key = self.session, None, None
        if session is not None:
            session.close()

