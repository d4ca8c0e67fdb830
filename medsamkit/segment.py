"""One prompted segmentation of a 2D image or of one slice of a volume — the CLI/batch/server path.

``segment_image`` wraps: pick the slice, resolve the intensity normalisation (on the whole volume
for 3D), set the image on a backend (local: cached embedding; remote: one upload), predict, and put
the 2D mask back into an array shaped like the input (3D input -> 3D mask with only that slice set).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .io import ImageData
from .preprocess import Normalization, normalize_to_uint8, resolve_normalization
from .volume import extract_slice, numpy_axis, put_slice


@dataclass
class SegmentResult:
    mask: np.ndarray              # same spatial shape as the input image, uint8 0/1
    slice_mask: np.ndarray        # (H, W) bool: the 2D result
    display: np.ndarray           # (H, W, 3) uint8: what the model saw (for overlays)
    prediction: object            # the backend's prediction (mask, score, low_res_logits)
    normalization: Normalization
    slice_index: int | None = None
    axis: int | None = None


def _plane(image: ImageData, slice_index, axis, normalization):
    """(numpy axis or None, the 2D image to segment, the intensity mapping resolved on the whole input)."""
    if image.is_3d:
        if slice_index is None:
            raise InputError(f"The input is a 3D volume {image.array.shape[::-1]} (x, y, z); choose a slice with "
                             "--slice K (and --axis axial|coronal|sagittal).")
        ax = numpy_axis(axis, image.direction)
        norm = resolve_normalization(normalization, image.array, image.modality)
        return ax, extract_slice(image.array, slice_index, ax), norm
    if slice_index not in (None, 0):
        raise InputError("--slice only applies to 3D volumes; this input is a 2D image.")
    return None, image.array, resolve_normalization(normalization, image.array, image.modality)


def _result(image: ImageData, pred, display, norm, slice_index, ax) -> SegmentResult:
    """The slice's mask placed in a mask of the whole input (the slice itself for a 2D image)."""
    if image.is_3d:
        full = np.zeros(image.array.shape, dtype=np.uint8)
        put_slice(full, pred.mask, slice_index, ax)
    else:
        full = pred.mask.astype(np.uint8)
    return SegmentResult(full, pred.mask, display, pred, norm, slice_index, ax)


def segment_image(backend, image: ImageData, box=None, points=None, point_labels=None,
                  slice_index: int | None = None, axis: "str | int" = "axial",
                  normalization: "str | Normalization | None" = "auto", mask_input=None) -> SegmentResult:
    """Segment ``image`` (2D, or slice ``slice_index`` along ``axis`` of a 3D volume) on a
    :class:`medsamkit.backend.Backend` (local or a server).

    Prompts are XY pixels of the 2D image / the extracted slice (see volume.py for which voxel
    axes a slice's X and Y are). The intensity mapping is resolved here (the display image for
    overlays needs it) and sent resolved, so both ends map intensities identically. A 3D volume is
    set whole: on a server the prompt then names the slice. Raises InputError for a missing slice
    index on 3D data or bad prompts.
    """
    ax, plane, norm = _plane(image, slice_index, axis, normalization)
    if image.is_3d:
        backend.set_volume(image.array, normalization=norm, modality=image.modality, direction=image.direction)
        pred = backend.predict(box=box, points=points, point_labels=point_labels, mask_input=mask_input,
                               slice_index=slice_index, axis=ax)
    else:
        backend.set_image(plane, normalization=norm, modality=image.modality)
        pred = backend.predict(box=box, points=points, point_labels=point_labels, mask_input=mask_input)
    return _result(image, pred, normalize_to_uint8(plane, norm), norm, slice_index, ax)
