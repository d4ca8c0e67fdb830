"""Prompt types and their validation, in original-image pixel coordinates.

Conventions (as segment-anything): points are XY (x = column, y = row) in pixels of the original
2D image; labels 1 = foreground (positive click), 0 = background (negative click); a box is
``[x0, y0, x1, y1]`` with x0 < x1, y0 < y1. A mask prompt is the low-res logits returned by a
previous prediction on the same image and model (shape (L, L), model frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass
class Prompt:
    box: np.ndarray | None = None          # (4,) float64 XYXY pixels, clipped to the image
    points: np.ndarray | None = None       # (N, 2) float64 XY pixels
    labels: np.ndarray | None = None       # (N,) int64, 1 positive / 0 negative
    mask_input: np.ndarray | None = None   # (L, L) float32 low-res logits

    @property
    def n_points(self) -> int:
        return 0 if self.points is None else len(self.points)


def make_prompt(image_hw: tuple[int, int], box=None, points=None, point_labels=None,
                mask_input=None, low_res_size: int | None = None) -> Prompt:
    """Validate prompts against an image of shape (H, W); raise InputError with a remedy.

    A box partly outside the image is clipped; a box entirely outside, a degenerate box (zero
    width/height after clipping), points outside the image, or labels other than 0/1 are errors.
    """
    h, w = image_hw
    prompt = Prompt()
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.size != 4 or not np.isfinite(b).all():
            raise InputError(f"A box needs 4 finite numbers X0 Y0 X1 Y1 (pixels); got {_numbers(box)}.")
        x0, x1 = sorted((b[0], b[2]))
        y0, y1 = sorted((b[1], b[3]))
        if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
            raise InputError(f"The box [{b[0]:g}, {b[1]:g}, {b[2]:g}, {b[3]:g}] lies outside the image "
                             f"(width {w}, height {h} pixels). Draw it on the image.")
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise InputError(f"The box [{b[0]:g}, {b[1]:g}, {b[2]:g}, {b[3]:g}] has no area inside the image; "
                             "drag a box at least 2 pixels wide and high.")
        prompt.box = np.array([x0, y0, x1, y1])
    if points is not None and len(np.atleast_1d(points)):
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        labels = np.ones(len(p), dtype=np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
        if len(labels) != len(p):
            raise InputError(f"Got {len(p)} points but {len(labels)} labels; give one label (1/0) per point.")
        if not np.isin(labels, (0, 1)).all():
            raise InputError(f"Point labels must be 1 (foreground) or 0 (background); got {labels.tolist()}.")
        if not np.isfinite(p).all():
            raise InputError("Point coordinates must be finite numbers.")
        outside = (p[:, 0] < 0) | (p[:, 0] > w - 1) | (p[:, 1] < 0) | (p[:, 1] > h - 1)
        if outside.any():
            raise InputError(f"Point {p[outside][0].tolist()} lies outside the image (width {w}, height {h}).")
        prompt.points, prompt.labels = p, labels.astype(np.int64)
    if mask_input is not None:
        m = np.asarray(mask_input, dtype=np.float32)
        m = m.reshape(m.shape[-2:]) if m.ndim > 2 and np.prod(m.shape[:-2]) == 1 else m
        if m.ndim != 2 or (low_res_size and m.shape != (low_res_size, low_res_size)):
            raise InputError(f"A mask prompt must be the low-res logits of a previous prediction with this model "
                             f"(shape ({low_res_size}, {low_res_size})); got shape {np.shape(mask_input)}.")
        prompt.mask_input = m
    if prompt.box is None and prompt.points is None:
        raise InputError("Give a box and/or at least one point (a mask prompt alone is not enough).")
    return prompt


def _numbers(values) -> str:
    """Numbers as a person writes them ("[1, nan, 3]"), never numpy reprs like np.float64(nan)."""
    try:
        return "[" + ", ".join(f"{float(v):g}" for v in np.ravel(np.asarray(values, dtype=np.float64))) + "]"
    except (TypeError, ValueError):
        return repr(values)
