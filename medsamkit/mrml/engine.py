"""The engine behind one small adapter: what the effect and the batch ask of a model.

Three calls cover every prompt mode of the effect (box, +/- points, refine with the previous mask,
propagate, markers) and the batch:

- :meth:`SliceEngine.segment_slice`  one 2D image + prompts -> :class:`medsamkit.predictor.Prediction`
- :meth:`SliceEngine.segment_plan`   a volume + a marker box plan -> VolumeSegmentation
- :meth:`SliceEngine.propagate`      a volume + prompts on one slice -> VolumeSegmentation

:class:`PredictorEngine` runs them in-process on a :class:`~medsamkit.predictor.Predictor`;
:class:`BackendEngine` on any ``medsamkit.backend`` Backend (LocalBackend, or RemoteBackend for a
GPU server). :func:`make_engine` is the one place that chooses. Engines are not thread-safe; the effect
owns one and uses it from one worker thread.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import DependencyError, InputError
from ..predictor import Prediction, Predictor
from ..preprocess import Normalization
from ..progress import CancelFn, ProgressFn, check_cancel
from ..prompts import make_prompt


class SliceEngine(Protocol):
    def segment_slice(self, image: np.ndarray, normalization: Normalization, box=None, points=None,
                      point_labels=None, mask_input=None, cancel: CancelFn = None) -> Prediction: ...

    def segment_plan(self, volume: np.ndarray, plan, normalization: Normalization, refine: bool = False,
                     progress: ProgressFn = None, cancel: CancelFn = None): ...

    def propagate(self, volume: np.ndarray, slice_index: int, axis: int, box=None, points=None,
                  point_labels=None, normalization: "Normalization | str" = "auto", progress: ProgressFn = None,
                  cancel: CancelFn = None): ...


class PredictorEngine:
    """In-process engine on one Predictor (its embedding cache makes re-prompting a slice cost ~0.1 s)."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    @property
    def description(self) -> str:
        model = self.predictor.model
        return f"{model.kind} on {model.device} (local)"

    def segment_slice(self, image: np.ndarray, normalization: Normalization, box=None, points=None,
                      point_labels=None, mask_input=None, cancel: CancelFn = None) -> Prediction:
        """Segment a (H, W) slice; prompts are its XY pixels. ``normalization`` is already resolved
        (on the whole volume or from the display window) so that every slice maps intensities alike."""
        if isinstance(mask_input, Prediction):
            mask_input = mask_input.low_res_logits
        # Validate the prompts first: a bad box must not cost an image encoding (~1.5 s on CPU).
        make_prompt(tuple(image.shape[:2]), box, points, point_labels, None)
        check_cancel(cancel)
        # set_image (not set_display_image): the same call exists on issue 7's backends, so a backend
        # object can stand in for the predictor here unchanged.
        self.predictor.set_image(image, normalization)
        check_cancel(cancel)
        return self.predictor.predict(box=box, points=points, point_labels=point_labels, mask_input=mask_input)

    def segment_plan(self, volume, plan, normalization, refine: bool = False, progress=None, cancel=None):
        from ..volume_segmentation import segment_volume

        return segment_volume(self.predictor, volume, plan, normalization=normalization, refine=refine,
                              progress=progress, cancel=cancel)

    def propagate(self, volume, slice_index, axis, box=None, points=None, point_labels=None,
                  normalization="auto", progress=None, cancel=None):
        from ..volume_segmentation import propagate

        return propagate(self.predictor, volume, slice_index, axis, box=box, points=points,
                         point_labels=point_labels, normalization=normalization, progress=progress, cancel=cancel)


class BackendEngine:
    """The same three calls on a ``medsamkit.backend`` Backend (set_image / set_volume, predict,
    propagate, segment_plan), plus :meth:`segment_view` for slice prompts on a volume the backend keeps.

    A remote server holds the volume once uploaded: the effect sends the whole volume with its first
    slice request (``SliceRequest.volume``), and every later click on any slice of it sends only
    coordinates and the slice index; propagation and markers reuse the same upload (the client skips
    an upload of identical voxels). Without a volume in the request it uploads just the slice.
    """

    def __init__(self, backend):
        self.backend = backend
        self._volume_key = None   # (SliceRequest.volume_key, normalization key) of the volume the backend holds

    @property
    def description(self) -> str:
        info = self.backend.info()
        where = f"remote {info.url}" if getattr(info, "remote", False) else "local backend"
        return f"{info.kind} on {info.device} ({where})"

    def holds_volume(self, volume_key) -> bool:
        """True if the backend holds the volume with this key (any intensity mapping set with it)."""
        return volume_key is not None and self._volume_key is not None and self._volume_key[0] == volume_key

    def segment_view(self, request, cancel: CancelFn = None):
        """Predict on slice ``request.prompt.view`` of the kept volume; None if the backend does not hold
        that volume and the request carries none (the caller then sends the slice: segment_slice)."""
        p = request.prompt
        key = (request.volume_key, request.normalization.key)
        if request.volume_key is None or (key != self._volume_key and request.volume is None):
            return None
        make_prompt(tuple(request.image.shape[:2]), p.box, p.points, p.labels, None)
        check_cancel(cancel)
        if key != self._volume_key:
            self._volume_key = None
            self.backend.set_volume(request.volume, request.normalization)
            self._volume_key = key
        check_cancel(cancel)
        return self.backend.predict(box=p.box, points=p.points, point_labels=p.labels,
                                    mask_input=request.mask_input, slice_index=p.view.index, axis=p.view.axis)

    def segment_slice(self, image, normalization, box=None, points=None, point_labels=None, mask_input=None,
                      cancel: CancelFn = None):
        make_prompt(tuple(image.shape[:2]), box, points, point_labels, None)
        check_cancel(cancel)
        self._volume_key = None
        self.backend.set_image(image, normalization)
        check_cancel(cancel)
        return self.backend.predict(box=box, points=points, point_labels=point_labels, mask_input=mask_input)

    def segment_plan(self, volume, plan, normalization, refine: bool = False, progress=None, cancel=None):
        self._volume_key = None  # the volume set below is the request's copy; its key is not known here
        self.backend.set_volume(volume, normalization)
        return self.backend.segment_plan(plan, refine=refine, progress=progress, cancel=cancel)

    def propagate(self, volume, slice_index, axis, box=None, points=None, point_labels=None,
                  normalization="auto", progress=None, cancel=None):
        self._volume_key = None
        self.backend.set_volume(volume, normalization)
        return self.backend.propagate(slice_index, axis, box=box, points=points, point_labels=point_labels,
                                      progress=progress, cancel=cancel)


def make_engine(model: str | None = None, checkpoint: str | None = None, device: str | None = None,
                backend: str = "local", token_file=None, timeout: float | None = None):
    """Build the engine the user chose: ``backend`` "local" (in-process), or a server URL.

    With a server, ``token_file`` holds its token (else $MEDSAMKIT_TOKEN); the model is the server's,
    so ``model``/``checkpoint`` other than the default are refused rather than silently ignored.

    Raises InputError for an unknown backend; DependencyError when the remote client is not available;
    the remote client's errors (server unreachable, wrong token, version mismatch) as they are.
    """
    if backend in (None, "", "local"):
        from ..models.registry import load_model

        return PredictorEngine(Predictor(load_model(model, checkpoint, device)))
    from ..backend import is_remote_spec

    if is_remote_spec(backend):
        try:
            from ..backend.remote import RemoteBackend
        except ImportError as exc:
            raise DependencyError(f"The remote backend {backend} needs medsamkit.backend.remote, which this "
                                  f"installation lacks ({exc}). Choose the local backend.") from exc
        if checkpoint or (model and model != "litemedsam"):
            raise InputError(f"Model '{model}' / checkpoint '{checkpoint or ''}' choose a local model; a server "
                             f"({backend}) uses its own (medsamkit serve --model ... --checkpoint ...). Clear them "
                             "or choose the local backend.")
        options = {} if timeout is None else {"timeout": float(timeout)}
        return BackendEngine(RemoteBackend(backend, token_file=token_file or None, **options))
    raise InputError(f"Unknown backend '{backend}'. Use 'local' or a server URL such as http://host:8765.")
