"""What a worker gets for one prompt: plain data cut from the scene on the main thread, no MRML nodes.

:mod:`medsamkit.mrml.interactive` builds these (prepare_*), runs them through a model session and applies
the result; :mod:`medsamkit.mrml.records` records what they asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..preprocess import Normalization
from .prompts import SlicePrompt
from .volumes import ViewSlice


@dataclass
class SliceRequest:
    """Everything a worker needs to segment one slice (plain data, no MRML)."""

    image: np.ndarray                # (H, W) raw intensities of the slice (storage order)
    normalization: Normalization
    prompt: SlicePrompt              # XY pixels of ``image``
    mask_input: object               # previous Prediction on this slice (or its (L, L) logits), or None
    ijk_to_target: np.ndarray        # (4, 4) volume IJK -> segmentation node RAS
    volume_key: tuple | None = None  # (volume node ID, image data MTime): which voxels the slice was cut from
    volume: np.ndarray | None = None  # a copy of the whole volume, when the session does not hold it yet


@dataclass
class VolumeRequest:
    """A 3D run: ``kind`` "markers" (``plan`` = BoxPlan) or "propagate" (``prompt`` on one slice)."""

    kind: str
    volume: np.ndarray               # (K, J, I) raw intensities
    normalization: Normalization
    ijk_to_target: np.ndarray
    plan: object = None
    prompt: SlicePrompt | None = None
    refine: bool = False
    volume_key: tuple | None = None  # (volume node ID, image data MTime): the backend keeps the volume by it
    markers: list | None = None      # markers runs: the marker lines (medsamkit.markers.Marker), for the record


@dataclass
class ViewRequest:
    """Encode the slice a view shows, ahead of a prompt (plain data, no MRML)."""

    view: ViewSlice
    normalization: Normalization
    volume_key: tuple
    volume: np.ndarray | None = None  # a copy of the volume, when the session does not hold it yet
