"""Simulated prompts for training: small callable classes the trainer is given (never logic in the loop).

Conventions as in medsamkit.prompts: masks are ``[row, col]`` bool arrays; points are XY pixels
(x = column, y = row); boxes ``[x0, y0, x1, y1]`` inclusive pixel corners. Generators take the mask
the user would be prompting (``(H, W)`` bool, original image pixels) and a ``numpy.random.Generator``
so that every prompt is reproducible from the sample's seed (exact resume).

- :class:`BoxPrompt` — MedSAM: the label's bounding box with each side moved outward by a random
  0..``jitter`` pixels (``bbox_shift`` in MedSAM's training code), clipped to the image.
- :class:`PointPrompt` — SAM-Med2D's initial clicks: positives drawn uniformly from the label,
  optional negatives from the background near it.
- :class:`MixedPrompt` — SAM-Med2D: a box or points with probability ``p_box``.
- :class:`ClickMixPrompt` — the point-capable recipe: box only, 1-N points, or box + points.
- :class:`CorrectionClick` — the iterative-training click: the centre (the
  point farthest from the region's border) of the largest error region; positive when the model
  missed foreground there, negative when it over-segmented.

Design note: the click itself is :func:`medsamkit.refinement.next_click` (the model-family code's
simulated user), so training, benchmarks and interactive refinement place clicks the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..refinement import next_click


@dataclass
class SimulatedPrompt:
    """A prompt in original-image pixels: box (4,) XYXY and/or points (N, 2) XY with labels (N,)."""

    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box (inclusive pixel corners, float64) of a non-empty (H, W) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise InputError("Cannot make a box prompt from an empty mask.")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


class BoxPrompt:
    """Bounding box of the mask, each side moved outward by ``rng.integers(0, jitter + 1)`` pixels."""

    def __init__(self, jitter: int = 20):
        if jitter < 0:
            raise InputError(f"Box jitter must be 0 or more pixels (got {jitter}).")
        self.jitter = int(jitter)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> SimulatedPrompt:
        h, w = mask.shape
        x0, y0, x1, y1 = mask_box(mask)
        shift = rng.integers(0, self.jitter + 1, size=4) if self.jitter else np.zeros(4, dtype=np.int64)
        box = np.array([max(0.0, x0 - shift[0]), max(0.0, y0 - shift[1]),
                        min(w - 1.0, x1 + shift[2]), min(h - 1.0, y1 + shift[3])])
        if box[2] - box[0] < 1:  # a one-pixel-wide label: give the box the 2-pixel minimum make_prompt needs
            box[0], box[2] = max(0.0, box[0] - 1), min(w - 1.0, box[2] + 1)
        if box[3] - box[1] < 1:
            box[1], box[3] = max(0.0, box[1] - 1), min(h - 1.0, box[3] + 1)
        return SimulatedPrompt(box=box)

    def __repr__(self) -> str:
        return f"BoxPrompt(jitter={self.jitter})"


class PointPrompt:
    """``positive`` points uniform on the mask; ``negative`` points on background inside the box grown by 20%."""

    def __init__(self, positive: int = 1, negative: int = 0):
        if positive < 1 or negative < 0:
            raise InputError("A point prompt needs at least one positive point and no negative count below 0.")
        self.positive, self.negative = int(positive), int(negative)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> SimulatedPrompt:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise InputError("Cannot place a positive point on an empty mask.")
        pick = rng.integers(0, ys.size, size=self.positive)
        points = [np.stack([xs[pick], ys[pick]], axis=1)]
        labels = [np.ones(self.positive, dtype=np.int64)]
        if self.negative:
            h, w = mask.shape
            x0, y0, x1, y1 = mask_box(mask)
            gx, gy = 0.2 * (x1 - x0 + 1), 0.2 * (y1 - y0 + 1)
            region = np.zeros_like(mask)
            region[int(max(0, y0 - gy)):int(min(h, y1 + gy + 1)), int(max(0, x0 - gx)):int(min(w, x1 + gx + 1))] = True
            by, bx = np.nonzero(region & ~mask)
            if by.size:
                pick = rng.integers(0, by.size, size=self.negative)
                points.append(np.stack([bx[pick], by[pick]], axis=1))
                labels.append(np.zeros(self.negative, dtype=np.int64))
        return SimulatedPrompt(points=np.concatenate(points).astype(np.float64), labels=np.concatenate(labels))

    def __repr__(self) -> str:
        return f"PointPrompt(positive={self.positive}, negative={self.negative})"


class MixedPrompt:
    """A box with probability ``p_box``, else points (SAM-Med2D trains half and half)."""

    def __init__(self, box: BoxPrompt | None = None, points: PointPrompt | None = None, p_box: float = 0.5):
        self.box = box or BoxPrompt()
        self.points = points or PointPrompt()
        self.p_box = float(p_box)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> SimulatedPrompt:
        return self.box(mask, rng) if rng.random() < self.p_box else self.points(mask, rng)

    def __repr__(self) -> str:
        return f"MixedPrompt({self.box!r}, {self.points!r}, p_box={self.p_box})"


class ClickMixPrompt:
    """The point-capable recipe's first prompt (SAM / MedicoSAM style): per sample one of

    - a box only (probability ``p_box``; sides jittered outward by 0..``jitter`` px),
    - points only (``p_points``): the first positive click at the object's centre (the pixel
      farthest from its border, where the simulated user of :mod:`medsamkit.refinement` clicks
      first) with probability ``p_centre``, else uniform on the object; then 0..``max_points`` - 1
      more points, each positive on the object or negative on nearby background,
    - a box plus 1..``max_points`` such points (the rest).

    Correction clicks at the largest error region follow in the training step (``clicks``).
    """

    def __init__(self, jitter: int = 10, max_points: int = 3, p_box: float = 0.3, p_points: float = 0.5,
                 p_centre: float = 0.5):
        if max_points < 1:
            raise InputError("The clicks prompt needs at least one point (points >= 1).")
        self.box = BoxPrompt(jitter)
        self.max_points = int(max_points)
        self.p_box, self.p_points, self.p_centre = float(p_box), float(p_points), float(p_centre)

    def _points(self, mask: np.ndarray, rng: np.random.Generator, n: int, centre_first: bool):
        pts, labs = [], []
        if centre_first:
            from ..refinement import _centre

            pts.append(_centre(mask))
            labs.append(1)
        while len(pts) < n:
            positive = not pts or rng.random() < 0.6
            one = PointPrompt(1, 0 if positive else 1)(mask, rng)
            pick = -1 if not positive and one.labels[-1] == 0 else 0
            pts.append(one.points[pick])
            labs.append(int(one.labels[pick]))
        return np.array(pts, dtype=np.float64).reshape(-1, 2), np.array(labs, dtype=np.int64)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> SimulatedPrompt:
        u = rng.random()
        if u < self.p_box:
            return self.box(mask, rng)
        if u < self.p_box + self.p_points:
            n = 1 + int(rng.integers(0, self.max_points)) if rng.random() < 0.5 else 1
            pts, labs = self._points(mask, rng, n, rng.random() < self.p_centre)
            return SimulatedPrompt(points=pts, labels=labs)
        box = self.box(mask, rng).box
        pts, labs = self._points(mask, rng, 1 + int(rng.integers(0, self.max_points)), rng.random() < self.p_centre)
        return SimulatedPrompt(box=box, points=pts, labels=labs)

    def __repr__(self) -> str:
        return (f"ClickMixPrompt(jitter={self.box.jitter}, max_points={self.max_points}, p_box={self.p_box}, "
                f"p_points={self.p_points}, p_centre={self.p_centre})")


class CorrectionClick:
    """Iterative-training click: ``(pred (H, W) bool, gt (H, W) bool) -> ((x, y), label) | None``."""

    def __call__(self, pred_mask: np.ndarray, gt_mask: np.ndarray):
        xy, label = next_click(pred_mask, gt_mask)
        return None if xy is None else (xy, label)

    def __repr__(self) -> str:
        return "CorrectionClick()"


def make_prompt_generator(kind: str, jitter: int = 20, points: int = 1):
    """Config names (box | points | mixed) -> a generator instance."""
    if kind == "box":
        return BoxPrompt(jitter)
    if kind == "points":
        return PointPrompt(points)
    if kind == "mixed":
        return MixedPrompt(BoxPrompt(jitter), PointPrompt(points))
    if kind == "clicks":
        return ClickMixPrompt(jitter, max_points=points)
    raise InputError(f"Unknown prompt kind '{kind}'; use box, points, mixed or clicks.")
