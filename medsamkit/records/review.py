"""Review queue: which slices of a 3D result a reader should look at first.

For a mask segmented slice by slice along one numpy axis, every segmented slice gets four signs of
trouble, each turned into a rank percentile over the run's slices (0 = least suspicious, 1 = most) so
that no sign's units dominate, then averaged with the weights :data:`WEIGHTS`:

- ``low_iou``: 1 - the model's predicted IoU for that slice (LiteMedSAM's own quality estimate);
- ``disagreement``: 1 - the mean Dice of the slice's mask with its neighbouring slices' masks, plus the
  area jump |log(area / mean neighbour area)| (a slice that disagrees with both neighbours is rarely right);
- ``box_edge``: the share of the mask's outline lying on its prompt box's edge (a mask cut by its box
  means the box was too tight; interpolated boxes are the usual cause);
- ``far_from_marks``: distance in slices to the nearest slice the reader marked (interpolated boxes
  drift away from the lesion the further they are from a drawn line);
- ``small``: 1 - the slice's mask area over the run's largest (a lesion's tips are small, and one
  wrong pixel row there costs a large share of the slice's Dice).

:func:`review_queue` returns the slices most suspicious first; :func:`next_to_review` walks it.
:func:`precision_at` measures a ranking against per-slice Dice (how benchmarks/bench_records.py and
Testing/records/test_review.py score it on the dev 3D marker runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics import dice
from ..volume import extract_slice

#: Weights of the signs in the score, chosen on the six dev 3D marker runs (benchmarks/RESULTS.md):
#: alone, box_edge ranked best (precision at 20 % 0.50), then low_iou (0.48), small (0.40), far_from_marks
#: (0.38) and disagreement (0.31; pooled chance 0.29). No held-out runs: the combined figure is optimistic.
WEIGHTS = {"low_iou": 1.0, "disagreement": 0.25, "box_edge": 2.0, "far_from_marks": 0.5, "small": 0.5}


@dataclass
class SliceReview:
    index: int                  # slice index along the run's axis
    score: float                # 0..1, higher = look first
    signs: dict = field(default_factory=dict)   # raw value of each sign (module docstring)
    reviewed: bool = False


def _box_edge_share(mask2d: np.ndarray, box) -> float:
    """Share of the mask's foreground pixels that lie on the prompt box's border (within 1 pixel)."""
    if box is None or not mask2d.any():
        return 0.0
    ys, xs = np.nonzero(mask2d)
    x0, y0, x1, y1 = [float(v) for v in box]
    on = (np.abs(xs - x0) <= 1) | (np.abs(xs - x1) <= 1) | (np.abs(ys - y0) <= 1) | (np.abs(ys - y1) <= 1)
    # compare with the outline length, not the area: a thin rim on the box matters as much on big masks
    outline = max(1.0, 2.0 * (np.ptp(xs) + np.ptp(ys) + 2))
    return float(min(1.0, on.sum() / outline))


def _percentile_ranks(values: np.ndarray) -> np.ndarray:
    if len(values) <= 1:
        return np.zeros(len(values))
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(float)
    ranks = order / (len(values) - 1)
    # ties share their mean rank, so a sign that is equal everywhere says nothing
    for v in np.unique(values):
        sel = values == v
        ranks[sel] = ranks[sel].mean()
    return ranks


def review_queue(mask: np.ndarray, axis: int, slices=None, scores: "dict | None" = None, boxes: "dict | None" = None,
                 marked=None, weights: "dict | None" = None) -> list[SliceReview]:
    """Rank the segmented slices of ``mask`` ((K, J, I) 0/1) along numpy ``axis``, most suspicious first.

    slices: the slices the run segmented (default: those with foreground); scores: {slice: predicted IoU};
    boxes: {slice: (4,) XYXY prompt box}; marked: slices that carried the reader's prompts. Missing
    information drops that sign (it gets weight 0).
    """
    mask = np.asarray(mask) != 0
    if slices is None:
        other = tuple(a for a in range(3) if a != axis)
        slices = np.nonzero(mask.any(axis=other))[0].tolist()
    slices = sorted(int(k) for k in slices)
    if not slices:
        return []
    w = dict(WEIGHTS, **(weights or {}))
    planes = {k: extract_slice(mask, k, axis) for k in slices}
    areas = {k: int(planes[k].sum()) for k in slices}
    signs = {name: [] for name in WEIGHTS}
    for k in slices:
        signs["low_iou"].append(1.0 - float(scores.get(k, scores.get(str(k), 1.0))) if scores else 0.0)
        neigh = [j for j in (k - 1, k + 1) if 0 <= j < mask.shape[axis]]
        nplanes = [planes[j] if j in planes else extract_slice(mask, j, axis) for j in neigh]
        agree = np.mean([dice(planes[k], p) for p in nplanes]) if nplanes else 1.0
        mean_area = np.mean([p.sum() for p in nplanes]) if nplanes else areas[k]
        jump = abs(np.log((areas[k] + 1.0) / (mean_area + 1.0)))
        signs["disagreement"].append(float(1.0 - agree + jump))
        box = None if not boxes else boxes.get(k, boxes.get(str(k)))
        signs["box_edge"].append(_box_edge_share(planes[k], box))
        signs["far_from_marks"].append(float(min(abs(k - m) for m in marked)) if marked else 0.0)
        signs["small"].append(1.0 - areas[k] / max(1, max(areas.values())))
    total = np.zeros(len(slices))
    weight_sum = 0.0
    for name, values in signs.items():
        arr = np.asarray(values, dtype=float)
        if w.get(name, 0) <= 0 or np.ptp(arr) == 0:
            continue
        total += w[name] * _percentile_ranks(arr)
        weight_sum += w[name]
    total = total / weight_sum if weight_sum else total
    queue = [SliceReview(k, float(total[n]), {name: float(signs[name][n]) for name in signs})
             for n, k in enumerate(slices)]
    return sorted(queue, key=lambda r: (-r.score, r.index))


def queue_from_entry(mask: np.ndarray, entry: dict) -> list[SliceReview]:
    """The queue of one recorded 3D run (markers / propagate entry of medsamkit.records.record) on its mask."""
    p, r = entry["prompt"], entry["result"]
    plan = p.get("plan")
    axis = plan["axis"] if plan else entry["plane"]["axis"]
    marked = plan["marked"] if plan else [entry["plane"]["index"]]
    boxes = {int(k): v for k, v in plan["boxes"].items()} if plan else None
    return review_queue(mask, axis, slices=r.get("slices"), scores={int(k): v for k, v in r.get("scores", {}).items()},
                        boxes=boxes, marked=marked)


def next_to_review(queue: list[SliceReview]) -> SliceReview | None:
    """The most suspicious slice not reviewed yet (marks it reviewed), or None when all are done."""
    for item in queue:
        if not item.reviewed:
            item.reviewed = True
            return item
    return None


def precision_at(queue: list[SliceReview], slice_dice: dict, share: float = 0.2) -> tuple[float, float]:
    """(precision, chance) of the queue's first ``share`` of slices against per-slice Dice ({slice: Dice}).

    The "worst" slices are the ``share`` of the run with the lowest Dice, and every slice tied with the
    last of them (a run where the model missed 30 slices has 30 slices at Dice 0: all are equally bad).
    precision: the fraction of the first ``share`` of the queue that are worst slices; chance: what a
    random order scores on average (the worst slices' share of the run).
    """
    ks = [r.index for r in queue if r.index in slice_dice]
    if not ks:
        return 0.0, 0.0
    n = max(1, int(round(share * len(ks))))
    cut = sorted(slice_dice[k] for k in ks)[n - 1]
    worst = {k for k in ks if slice_dice[k] <= cut}
    return sum(k in worst for k in ks[:n]) / n, len(worst) / len(ks)
