"""LocalBackend: the Backend interface on an in-process Predictor (and the server's per-session engine).

``medsamkit serve`` runs one LocalBackend per session, all sharing one loaded model; the
``model_thread`` argument (a :class:`ModelThread`) runs every call into that model (encode and
decode) on one thread, so concurrent sessions never run the network at the same time, while
slicing, normalisation and wire encoding of different sessions proceed in parallel.

Memory: the backend keeps a *reference* to the caller's volume (no copy; do not modify it while
it is set), the normalised 2D image, and its predictor's embedding cache (bounded by bytes).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import __version__
from ..embedding_cache import EmbeddingCache
from ..errors import InputError
from ..predictor import Prediction, Predictor
from ..prompts import make_prompt
from ..preprocess import Normalization, normalize_to_uint8, resolve_normalization, validate_image
from ..volume import extract_slice, numpy_axis
from .base import Backend, BackendInfo, ImageInfo, check_volume, mask_input_array, slice_hw


class ModelThread:
    """Runs model calls one at a time, in arrival order, on one dedicated thread.

    The server's GPU serialisation: every session's encode/decode goes through here, FIFO. One
    thread rather than a lock because the C allocator keeps per-thread heaps, so freed encoder
    activations are reused instead of stranded in each request thread's heap. Measured with 4
    concurrent CPU clients on a fresh server (bench host, loaded): RSS +205 MiB after the first
    round with a lock, +101 MiB with this thread; no further growth in later rounds with either.
    """

    def __init__(self, name: str = "medsamkit-model"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def run(self, fn, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class SerialPredictor(Predictor):
    """A Predictor whose model calls run on a :class:`ModelThread` (one shared model, many sessions)."""

    def __init__(self, model, cache=None, model_thread: ModelThread | None = None):
        super().__init__(model, cache)
        self._runner = model_thread

    def set_display_image(self, rgb, norm=None) -> None:
        if self._runner is None:
            return super().set_display_image(rgb, norm)
        self._runner.run(Predictor.set_display_image, self, rgb, norm)

    def predict(self, *args, **kwargs) -> Prediction:
        if self._runner is None:
            return super().predict(*args, **kwargs)
        return self._runner.run(Predictor.predict, self, *args, **kwargs)


class LocalBackend(Backend):
    """Runs the model in this process.

    model: a loaded PromptableModel (medsamkit.load_model), or pass ``predictor=`` to reuse one
    (and its embedding cache). cache_bytes: size of a new predictor's embedding cache.
    model_thread: a ModelThread that runs every model call (the server shares one among sessions).
    """

    def __init__(self, model=None, predictor: Predictor | None = None, cache_bytes: int = 1 << 30,
                 model_thread: ModelThread | None = None):
        self._owns_cache = predictor is None
        if predictor is None:
            if model is None:
                from ..models.loader import load_model

                model = load_model()
            predictor = SerialPredictor(model, EmbeddingCache(cache_bytes), model_thread)
        elif model_thread is not None:
            raise InputError("Pass model_thread only when the backend builds its own predictor.")
        self.predictor = predictor
        self._volume: np.ndarray | None = None
        self._display: np.ndarray | None = None   # (H, W, 3) uint8 of a 2D image
        self._norm: Normalization | None = None
        self._direction = None
        self._info: ImageInfo | None = None

    # -- interface -------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        model = self.predictor.model
        return BackendInfo(kind=model.kind, device=str(model.device), package_version=__version__,
                           extra={"model_id": model.model_id, "engine": getattr(model, "engine", "torch")})

    def set_image(self, image, normalization="auto", modality=None) -> ImageInfo:
        arr = validate_image(image)
        norm = resolve_normalization(normalization, arr, modality)
        display = normalize_to_uint8(arr, norm)
        self._clear()
        self._display, self._norm = display, norm
        self._info = ImageInfo(tuple(arr.shape), False, norm.label or norm.key, norm.key)
        return self._info

    def set_volume(self, volume, normalization="auto", modality=None, direction=None) -> ImageInfo:
        arr = check_volume(volume)
        norm = resolve_normalization(normalization, arr, modality)
        self._clear()
        self._volume, self._norm, self._direction = arr, norm, direction
        self._info = ImageInfo(tuple(arr.shape), True, norm.label or norm.key, norm.key)
        return self._info

    def predict(self, box=None, points=None, point_labels=None, mask_input=None,
                multimask_output=None, slice_index=None, axis=0) -> Prediction:
        # check the prompts against the image size first: a bad prompt must not cost an encoding
        make_prompt(self.slice_hw(slice_index, axis), box, points, point_labels)
        self.select(slice_index, axis)
        return self.predictor.predict(box=box, points=points, point_labels=point_labels,
                                      mask_input=mask_input_array(mask_input), multimask_output=multimask_output)

    def propagate(self, slice_index, axis=0, box=None, points=None, point_labels=None, progress=None, cancel=None,
                  margin_px=None, score_threshold=None, min_area=None, max_slices=None):
        from ..volume_segmentation import propagate

        options = {k: v for k, v in dict(margin_px=margin_px, score_threshold=score_threshold, min_area=min_area,
                                         max_slices=max_slices).items() if v is not None}
        return propagate(self.predictor, self._require_volume(), int(slice_index), self.resolve_axis(axis),
                         box=box, points=points, point_labels=point_labels, normalization=self._norm,
                         progress=progress, cancel=cancel, **options)

    def segment_plan(self, plan, refine=False, progress=None, cancel=None):
        from ..volume_segmentation import segment_volume

        return segment_volume(self.predictor, self._require_volume(), plan, normalization=self._norm,
                              refine=bool(refine), progress=progress, cancel=cancel)

    def close(self) -> None:
        self._clear()
        if self._owns_cache:  # a predictor passed in may share its cache with others
            self.predictor.cache.clear()

    # -- helpers used by the server and volume operations -----------------------------------------
    @property
    def image_info(self) -> ImageInfo:
        if self._info is None:
            raise InputError("No image is set: call set_image() or set_volume() first.")
        return self._info

    @property
    def volume(self) -> np.ndarray | None:
        return self._volume

    @property
    def normalization(self) -> Normalization | None:
        return self._norm

    def _require_volume(self) -> np.ndarray:
        if self._volume is None:
            raise InputError("Propagation and markers need a volume: call set_volume() first.")
        return self._volume

    def resolve_axis(self, axis) -> int:
        return numpy_axis(axis, self._direction)

    def slice_hw(self, slice_index=None, axis=0) -> tuple[int, int]:
        """(H, W) of the 2D image or of slice ``slice_index`` along ``axis`` (base.slice_hw)."""
        return slice_hw(self._info, slice_index, self.resolve_axis(axis))

    def select(self, slice_index=None, axis=0) -> tuple[int, int]:
        """Make the predictor's current image the 2D image or slice ``slice_index`` along ``axis``.

        Returns the (H, W) of that image. Encodes only on an embedding-cache miss.
        """
        if self.image_info.is_volume:
            self.slice_hw(slice_index, axis)  # the errors with their remedies
            plane = extract_slice(self._volume, int(slice_index), self.resolve_axis(axis))
            display = normalize_to_uint8(plane, self._norm)
        else:
            display = self._display
        self.predictor.set_display_image(display, self._norm)
        return display.shape[:2]

    @property
    def nbytes(self) -> int:
        """Bytes this backend holds: the image/volume, its display image and cached embeddings."""
        n = self.predictor.cache.nbytes
        for arr in (self._volume, self._display):
            if arr is not None:
                n += int(arr.nbytes)
        return n

    def _clear(self) -> None:
        self._volume = self._display = self._norm = self._direction = self._info = None
        self.predictor.reset()
