"""Simulated user and iterative refinement, as in SAM / SAM-Med2D / MedicoSAM interactive evaluation.

Single source of truth for where a simulated correction click goes and how a click session runs:

- :func:`next_click` looks at the error of a prediction against the ground truth, takes the
  largest connected error region (missed object -> positive click, false region -> negative
  click) and clicks at its centre: the pixel farthest from the region's boundary (Euclidean
  distance transform; the image border counts as boundary, as in RITM/SAM's click simulation).
- :func:`refine` runs a session: a first prediction from a box and/or a first click, then each
  correction click is added to all previous clicks and the previous low-res logits are fed back
  as the mask prompt (SAM-Med2D ``test.py``; micro-sam's iterative evaluation).

Design note: the click position is deterministic (the error region's centre) instead of SAM-Med2D's
random pixel of the error region, so evaluations are reproducible without seeds; a centre click is
the most informative single click, so figures are, if anything, slightly optimistic next to the
random-click protocol. All coordinates are XY pixels (x = column, y = row) of the 2D image.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import InputError

# 8-connectivity: a diagonal chain of error pixels is one region, as a user would see it.
_EIGHT = np.ones((3, 3), dtype=bool)


def next_click(pred_mask: np.ndarray, gt_mask: np.ndarray) -> tuple:
    """Where a user would click next to correct ``pred_mask`` towards ``gt_mask``.

    pred_mask, gt_mask: (H, W) bool-like arrays on the same grid. Returns ``(xy, label)``:
    xy is a float64 array ``[x, y]`` (column, row) of the centre of the largest error region and
    label is 1 (positive: the region was missed) or 0 (negative: the region is a false positive).
    Returns ``(None, None)`` when the prediction equals the ground truth. Ties between equally large
    regions go to the missed one (a user first adds what is missing); ties between centre pixels go
    to the one nearest the region's centroid. Raises InputError when the shapes differ.
    """
    from scipy import ndimage

    pred = np.asarray(pred_mask, dtype=bool)
    gt = np.asarray(gt_mask, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise InputError(f"next_click needs two 2D masks of one shape; got {pred.shape} and {gt.shape}.")
    best = None  # (area, is_missed, labels, index)
    for is_missed, error in ((True, gt & ~pred), (False, pred & ~gt)):
        if not error.any():
            continue
        labels, n = ndimage.label(error, structure=_EIGHT)
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        k = int(np.argmax(areas))
        if best is None or areas[k] > best[0]:
            best = (int(areas[k]), is_missed, labels, k + 1)
    if best is None:
        return None, None
    _, is_missed, labels, index = best
    region = labels == index
    return _centre(region), int(is_missed)


def _centre(region: np.ndarray) -> np.ndarray:
    """Pixel of ``region`` farthest from its boundary (image border included), as [x, y] float64."""
    from scipy import ndimage

    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    r0, c0 = rows[0], cols[0]
    crop = region[r0:rows[-1] + 1, c0:cols[-1] + 1]  # distance inside the region only needs its bounding box
    dist = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(dist >= dist.max() - 1e-9)
    if len(xs) > 1:  # plateau (e.g. a rectangle's midline): take the one nearest the centroid
        cy, cx = np.argwhere(crop).mean(axis=0)
        i = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
        xs, ys = xs[i:i + 1], ys[i:i + 1]
    return np.array([float(xs[0] + c0), float(ys[0] + r0)])


MERGE_MODES = ("none", "progressive")


def progressive_merge(previous_mask: np.ndarray, new_mask: np.ndarray, click_xy, positive: bool) -> np.ndarray:
    """Apply a correction click locally: only the changed region that the click touches is updated.

    FocalClick's progressive merge (Chen et al., CVPR 2022): a positive click adds the connected
    region of (new & ~previous) that contains the click; a negative click removes the connected
    region of (previous & ~new) that contains it; everything else keeps the previous mask. A click
    thus never undoes correct parts far from it, which matters for a box-trained model such as
    LiteMedSAM, whose whole mask shifts when a click is added. When the model did not change the
    clicked pixel in the asked direction, the previous mask is returned unchanged.
    Returns a new (H, W) bool array; the inputs are not modified.
    """
    from scipy import ndimage

    prev = np.asarray(previous_mask, dtype=bool)
    new = np.asarray(new_mask, dtype=bool)
    if prev.shape != new.shape or prev.ndim != 2:
        raise InputError(f"progressive_merge needs two 2D masks of one shape; got {prev.shape} and {new.shape}.")
    x, y = (int(round(float(v))) for v in np.asarray(click_xy, dtype=np.float64).ravel()[:2])
    if not (0 <= y < prev.shape[0] and 0 <= x < prev.shape[1]):
        raise InputError(f"Click ({x}, {y}) is outside the {prev.shape[1]}x{prev.shape[0]} image.")
    changed = (new & ~prev) if positive else (prev & ~new)
    out = prev.copy()
    if not changed[y, x]:
        return out
    labels, _ = ndimage.label(changed, structure=_EIGHT)
    region = labels == labels[y, x]
    out[region] = bool(positive)
    return out


@dataclass
class RefinementResult:
    """A simulated click session. predictions[0] comes from the initial prompt, predictions[i] after click i."""

    predictions: list = field(default_factory=list)   # medsamkit.predictor.Prediction per step
    points: np.ndarray | None = None                   # (N, 2) XY pixels of all clicks, in order
    labels: np.ndarray | None = None                   # (N,) int64, 1 positive / 0 negative

    @property
    def masks(self) -> list:
        return [p.mask for p in self.predictions]


def refine(predictor, gt_mask: np.ndarray, box=None, n_clicks: int = 5, first_click: bool | None = None,
           use_mask_prompt: bool = True, merge: str = "none") -> RefinementResult:
    """Simulate a user correcting a segmentation with clicks on the image set in ``predictor``.

    predictor: a :class:`medsamkit.predictor.Predictor` with the image already set.
    gt_mask: (H, W) bool ground truth on the image grid. box: optional [x0, y0, x1, y1] pixels kept
    in every step. n_clicks: total clicks in the session, including the first click when there is
    one (so ``box=None, n_clicks=5`` is SAM-Med2D's "5 points": 1 centre click + 4 corrections;
    ``box=B, n_clicks=k`` is a box followed by k corrections). first_click: start with a positive
    click at the centre of the object (default: only when there is no box).
    use_mask_prompt: feed the previous step's low-res logits as mask prompt (SAM-Med2D, micro-sam).
    merge: "none" (the model's mask after each click, as SAM-Med2D/micro-sam evaluate) or "progressive"
    (:func:`progressive_merge`: each correction changes only the region it touches; the next mask
    prompt is still the model's own logits). The recorded prediction then carries the merged mask.
    The session stops early when the prediction equals the ground truth. Raises InputError for a
    session with no prompt at all (no box, no clicks) or shape mismatches.
    """
    if merge not in MERGE_MODES:
        raise InputError(f"Unknown merge mode '{merge}'; choose one of {', '.join(MERGE_MODES)}.")
    gt = np.asarray(gt_mask, dtype=bool)
    if gt.shape != tuple(predictor.image_hw):
        raise InputError(f"Ground truth shape {gt.shape} differs from the image shape {tuple(predictor.image_hw)}.")
    if first_click is None:
        first_click = box is None
    if box is None and (not first_click or n_clicks < 1):
        raise InputError("A refinement session needs a box or at least one click.")
    points: list = []
    labels: list = []
    result = RefinementResult()
    if first_click:
        xy, label = next_click(np.zeros_like(gt), gt)
        if xy is None:
            raise InputError("The ground truth is empty: there is no object to click on.")
        points.append(xy)
        labels.append(label)
    pred = predictor.predict(box=box, points=_arr(points), point_labels=_lab(labels))
    result.predictions.append(pred)
    while len(points) < n_clicks:
        xy, label = next_click(pred.mask, gt)
        if xy is None:
            break
        points.append(xy)
        labels.append(label)
        new = predictor.predict(box=box, points=_arr(points), point_labels=_lab(labels),
                                mask_input=pred.low_res_logits if use_mask_prompt else None)
        if merge == "progressive":
            new = replace(new, mask=progressive_merge(pred.mask, new.mask, xy, label == 1))
        pred = new
        result.predictions.append(pred)
    result.points, result.labels = _arr(points), _lab(labels)
    return result


def _arr(points: list) -> np.ndarray | None:
    return np.array(points, dtype=np.float64).reshape(-1, 2) if points else None


def _lab(labels: list) -> np.ndarray | None:
    return np.array(labels, dtype=np.int64) if labels else None
