"""The backend interface: what the Slicer effect, batch and bench call, locally or on a server.

A backend holds one image: a 2D image (:meth:`Backend.set_image`) or a 3D volume
(:meth:`Backend.set_volume`), set once. Prompts then name a slice (``slice_index`` along
``axis``) of that volume, so a remote backend uploads the volume once per session and a click
sends only coordinates. :class:`~medsamkit.backend.local.LocalBackend` and
:class:`~medsamkit.backend.remote.RemoteBackend` implement exactly these methods with the same
arguments and results; code written against :class:`Backend` runs on either. Volume operations
(propagation, markers) run the engine's medsamkit.volume_segmentation wherever the model is.

Frames and units (as in medsamkit.predictor and medsamkit.volume): a volume is a numpy array
``[k, j, i]``; ``axis`` is a numpy axis (0, 1, 2) or a plane name resolved with the volume's
direction matrix (volume.numpy_axis); prompts are XY pixels of the 2D image or of the slice
(x = column, y = row); masks come back at the image's/slice's full size.

Backends are not thread-safe for concurrent calls on one instance (one image state); the effect
drives one backend from one thread at a time.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..predictor import Prediction


@dataclass(frozen=True)
class ImageInfo:
    """What was set: shape (H, W[, 3]) or (K, J, I), whether it is a volume, the resolved intensity mapping."""

    shape: tuple
    is_volume: bool
    normalization: str                  # resolved label, e.g. "lung", "W400/L40", "percentile"
    normalization_key: str = ""         # Normalization.key: identical on both ends for the same mapping


@dataclass(frozen=True)
class BackendInfo:
    kind: str                           # model kind, e.g. "litemedsam"
    device: str                         # where the model runs: "cpu", "cuda", ...
    package_version: str
    remote: bool = False
    url: str | None = None
    api_version: int | None = None
    extra: dict = field(default_factory=dict)


def is_prediction(obj) -> bool:
    """A prediction of any backend (a Prediction, a RemotePrediction): it has a mask and low-res logits."""
    return hasattr(obj, "low_res_logits") and hasattr(obj, "mask")


def mask_input_array(mask_input) -> "np.ndarray | None":
    """A mask prompt given as low-res logits (L, L) or as a previous prediction of any backend."""
    if mask_input is None:
        return None
    if is_prediction(mask_input):
        return mask_input.low_res_logits
    return np.asarray(mask_input, dtype=np.float32)


def check_volume(volume) -> np.ndarray:
    arr = np.asarray(volume)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(f"set_volume needs a 3D array (K, J, I); got shape {arr.shape}. Use set_image for 2D.")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"Volume data type {arr.dtype} is not numeric.")
    return arr


def slice_hw(info: "ImageInfo | None", slice_index, axis: int) -> tuple[int, int]:
    """(H, W) of the 2D image or of slice ``slice_index`` along numpy ``axis`` of the volume.

    Raises InputError (with the remedy) when no image is set, a slice index is missing/out of
    range, or one is given for a 2D image. Both backends check prompts with it before any work.
    """
    if info is None:
        raise InputError("No image is set: call set_image() or set_volume() first.")
    shape = info.shape
    if not info.is_volume:
        if slice_index not in (None, 0):
            raise InputError("slice_index only applies to volumes; a 2D image is set.")
        return int(shape[0]), int(shape[1])
    if slice_index is None:
        raise InputError("A volume is set: give slice_index (and axis) with each prompt.")
    if not 0 <= int(slice_index) < shape[axis]:
        raise InputError(f"Slice {slice_index} is outside the volume: axis {axis} has slices 0..{shape[axis] - 1}.")
    rest = [n for a, n in enumerate(shape) if a != axis]
    return int(rest[0]), int(rest[1])


class Backend(abc.ABC):
    """One image or volume + one model, prompted many times. Use as a context manager to close it."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Model kind, device and versions of whatever runs the model."""

    @abc.abstractmethod
    def set_image(self, image: np.ndarray, normalization="auto", modality: str | None = None) -> ImageInfo:
        """Set a 2D image: (H, W) raw intensities or (H, W, 3) colour.

        normalization: CT preset, "W,L", "percentile", "none", "auto" or a Normalization (see
        preprocess.py). Raises InputError on bad images; the caller's array is never modified.
        """

    @abc.abstractmethod
    def set_volume(self, volume: np.ndarray, normalization="auto", modality: str | None = None,
                   direction=None) -> ImageInfo:
        """Set a 3D volume (K, J, I). The normalisation is resolved once on the whole volume.

        direction: row-major 3x3 LPS direction matrix, used to resolve plane names to axes.
        """

    @abc.abstractmethod
    def predict(self, box=None, points=None, point_labels=None, mask_input=None,
                multimask_output: bool | None = None, slice_index: int | None = None,
                axis: "int | str" = 0) -> Prediction:
        """Segment the 2D image, or slice ``slice_index`` along ``axis`` of the volume.

        box [x0, y0, x1, y1], points (N, 2) XY, point_labels (N,) 1/0 as Predictor.predict;
        mask_input: low-res logits (L, L) or a Prediction returned earlier by this backend.
        Returns a prediction with ``mask`` (H, W) bool at full size, ``score``, ``low_res_logits``,
        ``logits`` and ``with_mask(mask)``: a :class:`Prediction` locally, a RemotePrediction (its own
        type; logits fetched when read) from a server.
        """

    @abc.abstractmethod
    def propagate(self, slice_index: int, axis: "int | str" = 0, box=None, points=None, point_labels=None,
                  progress=None, cancel=None, margin_px: float | None = None, score_threshold: float | None = None,
                  min_area: int | None = None, max_slices: int | None = None):
        """Segment slice ``slice_index`` from prompts and propagate through the volume.

        The engine's :func:`medsamkit.volume_segmentation.propagate` (options None = its defaults);
        returns its VolumeSegmentation (mask uint8 (K, J, I)). progress(done, total, text) and
        cancel() -> bool as everywhere (raises Cancelled). Needs a volume (set_volume).
        """

    @abc.abstractmethod
    def segment_plan(self, plan, refine: bool = False, progress=None, cancel=None):
        """Segment every slice of a :class:`medsamkit.markers.BoxPlan` with its box.

        Line markers become a plan on the client (:func:`medsamkit.markers.boxes_from_markers`, with
        its DEFAULT_MARGIN_MM), so every face computes the same boxes from the same lines.

        The engine's :func:`medsamkit.volume_segmentation.segment_volume`; returns a VolumeSegmentation.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the image (and the server session). Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
