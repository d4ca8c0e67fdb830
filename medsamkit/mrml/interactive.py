"""One interactive prompt, split by thread: prepare (main thread) -> run (worker) -> apply (main thread).

The Segment Editor effect must never block the UI during inference and must only touch MRML on the
main thread. So each prompt is three calls:

1. ``prepare_*`` reads the scene (volume voxels, geometry, view, prompts in RAS) and returns a request
   holding plain numpy copies — nothing in it refers to a MRML node.
2. ``run_request`` runs it on the model session (session.ModelSession: a model process, a server, or
   in-process for tests); it is safe on a worker thread (it touches no MRML), takes
   ``progress``/``cancel`` callables and may take seconds.
3. ``apply_result`` writes the result into the selected segment as one undo step
   (:func:`medsamkit.mrml.segments.write_mask`).

:class:`PromptState` keeps what the user has drawn on the current slice (box, +/- points, the last
low-res logits for refinement) and forgets it when the view moves to another slice or volume.

The instant first box: ``prepare_view_request`` (main thread, when a slice view has rested on a
slice for :data:`VIEW_DWELL_S`) + ``run_view_request`` (worker) ask the model process to encode the
viewed slice in the background (server/prefetch.py), so the first prompt there costs only the decoder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..predictor import Prediction
from ..preprocess import Normalization, resolve_normalization
from ..progress import CancelFn, ProgressFn, check_cancel
from .segments import MaskPlacement, SegmentTarget, WriteReport, ijk_to_segmentation, place_slice_mask, \
    place_volume_mask, write_mask
from .volumes import SlicePrompt, SliceRequest, ViewRequest, ViewSlice, VolumeRequest, array_from_volume, \
    box_from_ras, display_window_normalization, ras_to_slice_pixels, slice_image, slice_in_view, volume_geometry

DISPLAY_WINDOW = "display"  # window option meaning "use the volume's current display window/level"
VIEW_DWELL_S = 1.0  # a slice viewed this long without scrolling is encoded ahead (prepare_view_request)


class NormalizationCache:
    """Intensity mappings resolved once per volume content (percentiles over a volume take ~0.1-1 s)."""

    def __init__(self):
        self._cache: dict[tuple, Normalization] = {}

    def resolve(self, volume_node, volume: np.ndarray, window: "str | Normalization") -> Normalization:
        """``window``: a preset/"W,L"/"auto"/"percentile"/"none", :data:`DISPLAY_WINDOW`, or a Normalization."""
        if isinstance(window, Normalization) and window.mode == "range":
            return window
        if window == DISPLAY_WINDOW:
            return display_window_normalization(volume_node)
        key = (volume_node.GetID(), volume_node.GetImageData().GetMTime(), str(window))
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key[0]}  # one entry per volume
            self._cache[key] = resolve_normalization(window, volume)
        return self._cache[key]


@dataclass
class Result:
    request: "SliceRequest | VolumeRequest"
    placement: MaskPlacement
    seconds: float
    prediction: Prediction | None = None   # slice runs: for the next refinement
    warnings: list = field(default_factory=list)
    summary: str = ""
    model: dict | None = None              # what made it (medsamkit.records.record model block)
    scores: dict = field(default_factory=dict)   # 3D runs: slice -> predicted IoU
    slices: list = field(default_factory=list)   # 3D runs: the slices segmented


def read_view(volume_node, slice_to_ras) -> tuple[object, ViewSlice]:
    """(VolumeGeometry in world RAS, the ViewSlice shown by a view with ``slice_to_ras``)."""
    geometry = volume_geometry(volume_node)
    return geometry, slice_in_view(geometry, slice_to_ras)


def volume_key(volume_node) -> tuple:
    """Identifies a volume's current voxels: (node ID, image data MTime); changes when the voxels change."""
    return volume_node.GetID(), volume_node.GetImageData().GetMTime()


def prepare_slice_request(volume_node, segmentation_node, prompt: SlicePrompt, window="auto",
                          mask_input=None, cache: NormalizationCache | None = None,
                          whole_volume: bool = False) -> SliceRequest:
    """Main thread: copy the prompt's slice and resolve the intensity mapping on the whole volume.

    ``whole_volume``: also copy the whole volume into the request: the model session keeps volumes
    (uploaded once, then every click on any slice sends only coordinates). The effect asks
    ``not session.holds_volume(volume_key(node))`` whether its session still needs this volume.
    """
    volume = array_from_volume(volume_node, copy=False)
    norm = (cache or NormalizationCache()).resolve(volume_node, volume, window)
    return SliceRequest(slice_image(volume, prompt.view), norm, prompt, mask_input,
                        ijk_to_segmentation(volume_node, segmentation_node), volume_key(volume_node),
                        volume.copy() if whole_volume else None)


def prepare_volume_request(volume_node, segmentation_node, kind: str, window="auto", plan=None,
                           prompt: SlicePrompt | None = None, refine: bool = False,
                           cache: NormalizationCache | None = None, markers: list | None = None) -> VolumeRequest:
    """Main thread: copy the volume for a "markers" (needs ``plan``) or "propagate" (needs ``prompt``) run."""
    if kind not in ("markers", "propagate"):
        raise InputError(f"Unknown 3D run '{kind}'; use markers or propagate.")
    if (kind == "markers" and plan is None) or (kind == "propagate" and prompt is None):
        raise InputError("Markers need at least one line; propagation needs a box or points on a slice.")
    volume = array_from_volume(volume_node, copy=True)
    norm = (cache or NormalizationCache()).resolve(volume_node, volume, window)
    return VolumeRequest(kind, volume, norm, ijk_to_segmentation(volume_node, segmentation_node), plan, prompt, refine,
                         volume_key(volume_node), markers)


def prepare_view_request(volume_node, slice_to_ras, window="auto", cache: NormalizationCache | None = None,
                         session=None) -> "ViewRequest | None":
    """Main thread: what to encode for a view with ``slice_to_ras`` (None if the view is not aligned
    with the volume: nothing to encode). The volume is copied only if ``session`` (a ModelSession; None
    for none) does not hold it with this intensity mapping."""
    try:
        _, view = read_view(volume_node, slice_to_ras)
    except InputError:
        return None  # oblique view or outside the volume: a prompt there is refused anyway
    volume = array_from_volume(volume_node, copy=False)
    norm = (cache or NormalizationCache()).resolve(volume_node, volume, window)
    key = volume_key(volume_node)
    holds = getattr(session, "holds_volume", None)
    held = holds is not None and holds(key, norm)
    return ViewRequest(view, norm, key, None if held else volume.copy())


def run_view_request(session, request: ViewRequest, progress: ProgressFn = None, cancel: CancelFn = None) -> bool:
    """Worker thread: send the volume if needed, then ask for the slice's encoding (True if queued)."""
    check_cancel(cancel)
    return session.prefetch(request.volume_key, request.view, request.volume, request.normalization)


def run_request(session, request, progress: ProgressFn = None, cancel: CancelFn = None) -> Result:
    """Worker thread: run the request on a ModelSession (session.py). Touches no MRML.
    Raises MedSAMError (incl. Cancelled) on failure."""
    t0 = time.perf_counter()
    if isinstance(request, SliceRequest):
        p = request.prompt
        pred = _merge_correction(request, session.segment_view(request, cancel=cancel))
        placement = place_slice_mask(pred.mask, p.view, request.ijk_to_target)
        return Result(request, placement, time.perf_counter() - t0, prediction=pred,
                      summary=f"slice {p.view.index}: {int(pred.mask.sum())} pixels, predicted IoU {pred.score:.2f}",
                      model=_model_of(session))
    if request.kind == "markers":
        seg = session.segment_plan(request.volume, request.plan, request.normalization, refine=request.refine,
                                   progress=progress, cancel=cancel, volume_key=request.volume_key)
    else:
        p = request.prompt
        seg = session.propagate(request.volume, p.view.index, p.view.axis, box=p.box, points=p.points,
                                point_labels=p.labels, normalization=request.normalization, progress=progress,
                                cancel=cancel, volume_key=request.volume_key)
    placement = place_volume_mask(seg.mask, request.ijk_to_target, seg.axis, seg.slices)
    return Result(request, placement, time.perf_counter() - t0, warnings=list(seg.warnings),
                  summary=f"{len(seg.slices)} slices, {int(seg.mask.sum())} voxels", model=_model_of(session),
                  scores=dict(seg.scores), slices=list(seg.slices))


def _model_of(session) -> "dict | None":
    """The model block for the result's prompt record (never fails a result)."""
    try:
        from .records import model_of

        return model_of(session)
    except Exception:  # an engine without model information (a test double): the record says "unknown"
        return None


def _merge_correction(request: SliceRequest, pred):
    """Refine mode: the newest click corrects only the region it touches (refinement.progressive_merge).

    Applies when the request refines a previous prediction of the same slice (mask_input) with clicks;
    the returned prediction carries the merged mask and the model's own logits (the next mask prompt).
    """
    p, previous = request.prompt, request.mask_input
    if p.points is None or not len(p.points) or getattr(previous, "mask", None) is None:
        return pred
    if tuple(previous.mask.shape) != tuple(pred.mask.shape):
        return pred
    from ..refinement import progressive_merge

    merged = progressive_merge(previous.mask, pred.mask, p.points[-1], int(p.labels[-1]) == 1)
    if hasattr(pred, "with_mask"):  # Prediction and RemotePrediction (logits stay on the server)
        return pred.with_mask(merged)
    import copy

    out = copy.copy(pred)  # not dataclasses.replace: a RemotePrediction is not built from its fields
    out.mask = merged
    return out


def apply_result(target: SegmentTarget, result: Result, mode: str = "replace") -> WriteReport:
    """Main thread: write a result into the selected segment as one undo step (its prompt record entry,
    medsamkit.mrml.records, is written in the same step: Undo removes both)."""
    report = write_mask(target, result.placement, mode)
    from .records import record_result

    record_result(target, result, mode)
    return report


@dataclass
class PromptState:
    """What the user drew on the current slice, in that slice's pixels.

    A box starts a new object (points and the previous result are dropped); points accumulate;
    ``previous`` is the last result's Prediction, the mask prompt in refine mode (kept as the Prediction,
    not its logits: a remote backend fetches logits only when needed, and on the worker thread). Moving
    to another slice or volume (a different ``key``) starts afresh.
    """

    key: tuple | None = None
    view: ViewSlice | None = None
    box: np.ndarray | None = None
    points: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    previous: Prediction | None = None

    def _enter(self, volume_id: str, view: ViewSlice) -> None:
        key = (volume_id, view.axis, view.index, view.shape)
        if key != self.key:
            self.key, self.view = key, view
            self.box, self.points, self.labels, self.previous = None, [], [], None

    def set_box(self, volume_node, slice_to_ras, corner_a_ras, corner_b_ras) -> SlicePrompt:
        geometry, view = read_view(volume_node, slice_to_ras)
        box = box_from_ras(geometry, view, corner_a_ras, corner_b_ras)
        self._enter(volume_node.GetID(), view)
        self.box, self.points, self.labels, self.previous = box, [], [], None
        return self.prompt()

    def add_point(self, volume_node, slice_to_ras, point_ras, positive: bool = True) -> SlicePrompt:
        geometry, view = read_view(volume_node, slice_to_ras)
        xy = ras_to_slice_pixels(geometry, view, point_ras)[0]
        self._enter(volume_node.GetID(), view)
        self.points.append(xy)
        self.labels.append(1 if positive else 0)
        return self.prompt()

    def remember(self, result: Result) -> None:
        if result.prediction is not None:
            self.previous = result.prediction

    def prompt(self) -> SlicePrompt:
        if self.view is None or (self.box is None and not self.points):
            raise InputError("Drag a box or click a point on the slice first.")
        pts = np.array(self.points, dtype=float).reshape(-1, 2) if self.points else None
        labels = np.array(self.labels, dtype=np.int64) if self.points else None
        return SlicePrompt(self.view, None if self.box is None else self.box.copy(), pts, labels)

    def reset(self) -> None:
        self.key = self.view = self.box = self.previous = None
        self.points, self.labels = [], []
