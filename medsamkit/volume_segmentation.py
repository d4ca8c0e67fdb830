"""3D segmentation from 2D prompts: one box per slice (markers), and propagation from one slice.

Both walk slices along one numpy axis of a (K, J, I) volume, prompt the :class:`Predictor` on each
and assemble a uint8 (K, J, I) mask in the volume's own grid (its geometry is the caller's). The
intensity normalisation is resolved once over the whole volume
(:func:`medsamkit.preprocess.resolve_normalization`) so every slice gets the same mapping; each
slice's embedding goes through the predictor's cache, so a refinement pass or a second run over
the same slices costs decoder time only (~0.08 s per slice on CPU against ~1.5 s per encoding).

Refinement (``segment_volume(..., refine=True)``): after the first pass, slices inside the marked
range whose mask is empty or whose area jumps against both neighbours (outside [1/2, 2] times
their mean) are prompted again with the bounding box of the neighbouring masks (plus a margin) and
the neighbours' mean low-res logits as a mask prompt. Neighbouring slices of one volume share the
model frame, so their logits are aligned. It is off by default; benchmarks/RESULTS.md
has its measured effect.

Propagation (:func:`propagate`), LiteMedSAM style: segment the prompted slice, then walk both
ways; each next slice is prompted with the previous slice's mask bounding box plus a margin (3
pixels at the model's 256 scale, as the LiteMedSAM authors' 3D inference). LiteMedSAM's predicted
IoU alone is a poor stop signal: it stayed at 0.6-0.9 on slices past the end of all three dev
lesions measured (lung1, brain1, the test phantom), because a box prompt always "contains"
something. So a direction stops at the first slice where any of these holds:

- the mask vanishes (fewer than ``min_area`` pixels);
- the predicted IoU is below ``score_threshold`` (default 0.5);
- the mask overlaps the previous slice's mask with IoU below ``min_overlap`` (default 0.25; the
  slice past the lung tumour's end: 0.10, inside the lesions: 0.39-0.86);
- the median display intensity (0..255) inside the mask moved by more than ``max_intensity_shift``
  x 255 from the start slice's (default 0.15; past the phantom's end the mask slid onto background:
  244 -> 51; inside the lesions the shift stayed below 36).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConstantImageError, InputError
from .markers import BoxPlan
from .predictor import Prediction, Predictor
from .preprocess import Normalization, normalize_to_uint8, resolve_normalization
from .progress import CancelFn, ProgressFn, check_cancel, report
from .volume import extract_slice, put_slice

#: Area ratio against the neighbours' mean outside which a slice is re-prompted by refinement.
REFINE_AREA_RATIO = 2.0
#: Propagation stop rules (module docstring has the measurements behind them).
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_MIN_OVERLAP = 0.25
DEFAULT_MAX_INTENSITY_SHIFT = 0.15


@dataclass
class VolumeSegmentation:
    """Result of a 3D run.

    mask: uint8 (K, J, I) 0/1 on the input volume's grid; scores: slice index -> predicted IoU of
    that slice's mask; axis: numpy axis the slices were taken along; slices: the slices that were
    segmented (sorted); warnings: things to show the user (stop reasons, refined slices, ...).
    """

    mask: np.ndarray
    scores: dict = field(default_factory=dict)
    axis: int = 0
    slices: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    boxes: dict = field(default_factory=dict)          # slice -> (4,) XYXY box used last
    refined: list = field(default_factory=list)        # slices re-prompted by refinement
    normalization: Normalization | None = None


class _SliceRunner:
    """Slices of one volume -> display images on the predictor (shared normalisation)."""

    def __init__(self, predictor: Predictor, volume: np.ndarray, axis: int, normalization, modality):
        if volume.ndim != 3:
            raise InputError(f"Expected a 3D volume (K, J, I), got an array of shape {volume.shape}.")
        if axis not in (0, 1, 2):
            raise InputError(f"Slice axis must be 0, 1 or 2 (numpy order k, j, i); got {axis}.")
        self.predictor, self.volume, self.axis = predictor, volume, axis
        self.norm = resolve_normalization(normalization, volume, modality)
        self.display: np.ndarray | None = None  # (H, W, 3) uint8 of the slice last set

    def set_slice(self, k: int) -> bool:
        """Encode (or fetch) slice k; False when the slice is constant (nothing to segment)."""
        plane = extract_slice(self.volume, k, self.axis)
        try:
            rgb = normalize_to_uint8(plane, self.norm)
        except ConstantImageError:  # a constant slice (padding, outside the scan) cannot hold the lesion
            return False  # (NaN/Inf are refused for the whole volume by resolve_normalization above)
        self.predictor.set_display_image(rgb, self.norm)
        self.display = rgb
        return True

    def predict(self, k: int, **prompts) -> Prediction | None:
        return self.predictor.predict(**prompts) if self.set_slice(k) else None


def segment_volume(predictor: Predictor, volume: np.ndarray, plan: BoxPlan, normalization="auto",
                   refine: bool = False, progress: ProgressFn = None, cancel: CancelFn = None,
                   modality: str | None = None) -> VolumeSegmentation:
    """Segment every slice of ``plan`` with its box (see :func:`medsamkit.markers.boxes_from_markers`).

    volume: (K, J, I) raw intensities; normalization: as Predictor.set_image, resolved on the whole
    volume. Returns a :class:`VolumeSegmentation`. Raises InputError (bad volume/plan),
    :class:`~medsamkit.progress.Cancelled` when ``cancel()`` turns true.
    """
    if not plan.boxes:
        raise InputError("The box plan is empty: no slice to segment. Draw markers on at least one slice.")
    runner = _SliceRunner(predictor, volume, plan.axis, normalization, modality)
    n_slices = volume.shape[plan.axis] if volume.ndim == 3 else 0
    bad = [k for k in plan.boxes if not 0 <= k < n_slices]
    if bad:
        raise InputError(f"The box plan has slices {bad[:5]} outside the volume (axis {plan.axis} has slices "
                         f"0..{n_slices - 1}); was it made for another volume?")
    result = VolumeSegmentation(np.zeros(volume.shape, dtype=np.uint8), axis=plan.axis, warnings=list(plan.warnings),
                                normalization=runner.norm)
    slices = plan.slices
    total = len(slices) * (2 if refine else 1)
    preds: dict[int, Prediction | None] = {}
    for n, k in enumerate(slices):
        check_cancel(cancel)
        report(progress, n, total, f"slice {k}")
        box = np.asarray(plan.boxes[k], dtype=np.float64)
        preds[k] = runner.predict(k, box=box)
        result.boxes[k] = box
    if refine:
        _refine(runner, plan, preds, result, progress, cancel, len(slices), total)
    for k in slices:
        pred = preds[k]
        if pred is None:
            result.warnings.append(f"Slice {k} is constant (no image content); left empty.")
            result.scores[k] = 0.0
            continue
        put_slice(result.mask, pred.mask.astype(np.uint8), k, plan.axis)
        result.scores[k] = pred.score
    result.slices = slices
    report(progress, total, total, "done")
    return result


def _area(pred: Prediction | None) -> int:
    return 0 if pred is None else int(pred.mask.sum())


def _refine(runner: _SliceRunner, plan: BoxPlan, preds: dict, result: VolumeSegmentation,
            progress: ProgressFn, cancel: CancelFn, done: int, total: int) -> None:
    """Re-prompt outlier slices once (module docstring); updates ``preds`` and ``result`` in place."""
    lo, hi = min(plan.marked), max(plan.marked)
    marked = set(plan.marked)
    suspects = []
    for k in plan.slices:
        if k in marked or not lo < k < hi:
            continue  # the reader's own boxes are kept as drawn
        nbs = [preds.get(k - 1), preds.get(k + 1)]
        nb_areas = [_area(p) for p in nbs if p is not None]
        if not nb_areas or max(nb_areas) == 0:
            continue
        area, ref = _area(preds[k]), float(np.mean(nb_areas))
        if area == 0 or area > REFINE_AREA_RATIO * ref or area < ref / REFINE_AREA_RATIO:
            suspects.append(k)
    originals = dict(preds)  # neighbours are read from the first pass, not from refined slices
    for n, k in enumerate(suspects):
        check_cancel(cancel)
        report(progress, done + n, total, f"refining slice {k}")
        nbs = [p for p in (originals.get(k - 1), originals.get(k + 1)) if p is not None and p.mask.any()]
        union = np.logical_or.reduce([p.mask for p in nbs])
        ys, xs = np.nonzero(union)
        pad = 0.1 * max(xs.max() - xs.min(), ys.max() - ys.min()) + 2  # neighbours differ a little in size
        box = np.array([xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad], dtype=np.float64)
        mask_input = np.mean([p.low_res_logits for p in nbs], axis=0)
        pred = runner.predict(k, box=box, mask_input=mask_input)
        if pred is not None:
            preds[k] = pred
            result.boxes[k] = box
            result.refined.append(k)
    if result.refined:
        result.warnings.append(f"Refinement re-prompted slices {result.refined} (empty or area jump against "
                               "their neighbours).")


def _median_inside(runner: _SliceRunner, mask: np.ndarray) -> float:
    """Median display value (0..255) of the slice last set on the predictor, inside ``mask``."""
    return float(np.median(runner.display[..., 0][mask])) if mask.any() else float("nan")


def _stop_reason(runner, pred, prev, reference, min_area, score_threshold, min_overlap, max_shift) -> str:
    if pred is None or _area(pred) < min_area:
        return "the mask vanished"
    if pred.score < score_threshold:
        return f"predicted IoU {pred.score:.2f} < {score_threshold:.2f}"
    overlap = np.logical_and(pred.mask, prev.mask).sum() / max(np.logical_or(pred.mask, prev.mask).sum(), 1)
    if overlap < min_overlap:
        return f"the mask overlaps the previous slice's with IoU {overlap:.2f} < {min_overlap:.2f}"
    if max_shift is not None:
        shift = abs(_median_inside(runner, pred.mask) - reference) / 255.0
        if shift > max_shift:
            return f"the intensity inside the mask moved by {shift:.2f} of the display range (> {max_shift:.2f})"
    return ""


def propagate(predictor: Predictor, volume: np.ndarray, slice_index: int, axis: int, box=None, points=None,
              point_labels=None, normalization="auto", progress: ProgressFn = None, cancel: CancelFn = None,
              margin_px: float | None = None, score_threshold: float = DEFAULT_SCORE_THRESHOLD, min_area: int = 4,
              min_overlap: float = DEFAULT_MIN_OVERLAP, max_intensity_shift: float | None = DEFAULT_MAX_INTENSITY_SHIFT,
              max_slices: int | None = None, modality: str | None = None) -> VolumeSegmentation:
    """Segment slice ``slice_index`` from prompts, then propagate to both ends (module docstring).

    volume: (K, J, I); box/points: XY pixels of the slice along numpy ``axis``; margin_px: pixels
    added around the previous mask's bounding box (None: 3 at the model's 256 scale, at least 1);
    min_overlap / max_intensity_shift: stop rules (module docstring; 0 / None switch them off);
    max_slices: at most this many slices each way (None: to the volume's end). Returns a
    :class:`VolumeSegmentation` whose ``warnings`` say where and why each direction stopped. Raises InputError (bad slice/prompts, or an empty first mask),
    :class:`~medsamkit.progress.Cancelled`.
    """
    runner = _SliceRunner(predictor, volume, axis, normalization, modality)
    n = volume.shape[axis]
    if not 0 <= int(slice_index) < n:
        raise InputError(f"Slice {slice_index} is outside the volume: axis {axis} has slices 0..{n - 1}.")
    k0 = int(slice_index)
    first = runner.predict(k0, box=box, points=points, point_labels=point_labels)
    if first is None:
        raise InputError(f"Slice {k0} is constant (no image content); choose a slice that shows the structure.")
    result = VolumeSegmentation(np.zeros(volume.shape, dtype=np.uint8), axis=axis, normalization=runner.norm)
    if int(first.mask.sum()) < min_area:
        raise InputError(f"The prompt on slice {k0} gave an empty mask; nothing to propagate. Adjust the box/points.")
    put_slice(result.mask, first.mask.astype(np.uint8), k0, axis)
    result.scores[k0] = first.score
    if box is not None:
        result.boxes[k0] = np.asarray(box, dtype=np.float64)
    limit = n if max_slices is None else int(max_slices)
    h, w = first.mask.shape
    margin = max(1.0, 3.0 * max(h, w) / 256.0) if margin_px is None else float(margin_px)
    reference = _median_inside(runner, first.mask)
    total = min(n - 1 - k0, limit) + min(k0, limit) + 1
    done = 1
    for step in (1, -1):
        prev, k = first, k0 + step
        direction = "up" if step > 0 else "down"
        while 0 <= k < n and abs(k - k0) <= limit:
            check_cancel(cancel)
            report(progress, done, total, f"slice {k}")
            ys, xs = np.nonzero(prev.mask)
            next_box = np.array([xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin])
            pred = runner.predict(k, box=next_box)
            done += 1
            why = _stop_reason(runner, pred, prev, reference, min_area, score_threshold, min_overlap,
                               max_intensity_shift)
            if why:
                result.warnings.append(f"Propagation {direction} stopped at slice {k}: {why}.")
                break
            put_slice(result.mask, pred.mask.astype(np.uint8), k, axis)
            result.scores[k] = pred.score
            result.boxes[k] = next_box
            prev, k = pred, k + step
    result.slices = sorted(result.scores)
    report(progress, total, total, "done")
    return result
