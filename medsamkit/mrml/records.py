"""Prompt records on a segmentation node: one segment tag per segment, saved with the scene.

Each segment keeps its record (:mod:`medsamkit.records.record`) in the segment tag ``MedSAM.PromptRecord``
(``vtkSegment::SetTag``). Slicer writes segment tags into the ``.seg.nrrd`` (``Segment<N>_Tags``) when
the scene or the segmentation is saved, and reads them back on load.

Undo: :func:`record_result` is called *after* :func:`medsamkit.mrml.segments.write_mask`, whose
``SaveStateForUndo`` snapshots the segmentation (segment tags included: vtkSegmentationHistory copies
whole segments). So the result and its record entry are one undo step: Undo restores the tag text of
before the result, Redo brings the entry back (Testing/records/test_mrml_records.py checks both with
slicer-core's vtkSlicerSegmentEditorLogic).

Resume: :func:`prompt_markups_from_record` re-creates a record's prompts as markups (marker lines,
+/- points, box ROIs) so a reader can continue a case with the prompts in place.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from ..records.record import (TAG, append_entry, decode_tag, encode_tag, image_geometry, make_entry, markers_block,
                       markers_from_block, model_block, plan_block, prompt_block, prompt_kind, result_block,
                       window_block)

POINTS_NAME = "MedSAM prompts"


def get_record(segmentation_node, segment_id: str) -> dict | None:
    """The segment's record, None when it has none. RecordError when the tag is corrupt or foreign."""
    import vtk

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"Segment '{segment_id}' is not in '{segmentation_node.GetName()}'.")
    value = vtk.reference("")
    if not segment.GetTag(TAG, value):
        return None
    return decode_tag(str(value), f"segment '{segment.GetName()}' record")


def set_record(segmentation_node, segment_id: str, record: dict) -> None:
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"Segment '{segment_id}' is not in '{segmentation_node.GetName()}'.")
    segment.SetTag(TAG, encode_tag(record))


def model_of(engine, backend_spec: str = "local") -> dict:
    """The model block of an effect session (ModelSession) or a batch Backend."""
    source = getattr(engine, "backend", None) or getattr(engine, "predictor", None) or engine
    spec = backend_spec
    info = getattr(source, "info", None)
    if callable(info) and not hasattr(source, "predictor"):
        spec = getattr(info(), "url", None) or backend_spec
    return model_block(source, spec)


def segment_snapshot(segmentation_node, segment_id: str, shape, ijk_to_target) -> np.ndarray | None:
    """The segment on the volume grid (K, J, I) uint8, or None when its lattice is not the volume's."""
    import slicer
    import vtk
    import vtk.util.numpy_support as ns

    from .segments import SAME_LATTICE_ATOL
    from .volumes import matrix_to_numpy

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    # the shared layer itself, read without a copy (GetSegmentBinaryLabelmapRepresentation copies and
    # extracts: ~25 ms on the bundled CT against ~1 ms here, which matters on a 0.1 s refinement click)
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()) \
        if segment is not None else None
    if image is None or not image.IsA("vtkOrientedImageData"):
        return None
    label = segment.GetLabelValue()
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    if not np.allclose(matrix_to_numpy(m), ijk_to_target, atol=SAME_LATTICE_ATOL):
        return None
    out = np.zeros(shape, np.uint8)
    i0, i1, j0, j1, k0, k1 = image.GetExtent()
    if i1 < i0 or j1 < j0 or k1 < k0 or image.GetPointData().GetScalars() is None:
        return out
    arr = ns.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    lo = np.maximum([k0, j0, i0], 0)
    hi = np.minimum([k1 + 1, j1 + 1, i1 + 1], shape)
    if np.any(hi <= lo):
        return out
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = arr[lo[0] - k0:hi[0] - k0, lo[1] - j0:hi[1] - j0,
                                                     lo[2] - i0:hi[2] - i0] == label
    return out


def _image_block(shape, ijk_to_target) -> dict:
    from ..geometry import VolumeGeometry

    g = VolumeGeometry.from_ijk_to_ras(ijk_to_target, shape)
    return image_geometry(shape, g.spacing, g.origin, g.direction)


def record_result(target, result, mode: str = "replace", model: dict | None = None) -> dict:
    """After :func:`medsamkit.mrml.interactive.apply_result`: append the result's entry to its segment's record.

    target: the SegmentTarget written to; result: interactive.Result (its ``model`` block, set by
    run_request, unless ``model`` is given). Returns the entry. Never raises for a damaged existing
    record: that one is replaced by a new record (the damaged text is kept in tag ``MedSAM.PromptRecord.damaged``).
    """
    from ..records.record import RecordError
    from .volumes import SliceRequest

    t0 = time.perf_counter()
    req = result.request
    shape = tuple(req.prompt.view.shape) if isinstance(req, SliceRequest) else tuple(req.volume.shape)
    image = _image_block(shape, req.ijk_to_target)
    model = model or getattr(result, "model", None) or {"kind": "unknown", "weights_sha256": None, "adapter": None,
                                                        "engine": None, "backend": "local"}
    if isinstance(req, SliceRequest):
        p, pred = req.prompt, result.prediction
        previous = req.mask_input
        prompt = prompt_block(image, p.view.axis, p.view.index, p.box, p.points, p.labels)
        prompt["previous"] = getattr(previous, "_medsam_record_id", None)
        merged = (p.points is not None and len(p.points) and getattr(previous, "mask", None) is not None
                  and tuple(previous.mask.shape) == tuple(pred.mask.shape))
        prompt["merge"] = "progressive" if merged else None
        kind, axis, index = prompt_kind(p.box, p.points, previous), p.view.axis, p.view.index
        res_block = result_block(pred.mask, scores={index: pred.score})
        region = "slice"
    else:
        seg = result.placement
        if req.kind == "markers":
            prompt = prompt_block(image)
            prompt["plan"] = plan_block(req.plan)
            prompt["markers"] = markers_block(getattr(req, "markers", None) or []) or None
            prompt["options"] = {"refine": bool(req.refine)}
            axis, index = req.plan.axis, None
        else:
            p = req.prompt
            prompt = prompt_block(image, p.view.axis, p.view.index, p.box, p.points, p.labels)
            axis, index = p.view.axis, p.view.index
        kind = req.kind
        full = np.zeros(shape, np.uint8)
        (k0, j0, i0), (nk, nj, ni) = seg.offset_kji, seg.mask.shape
        full[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni] = seg.mask
        res_block = result_block(full, scores=getattr(result, "scores", None) or None,
                                 slices=getattr(result, "slices", None) or None)
        region = "slab"
    snap = segment_snapshot(target.segmentation_node, target.segment_id, shape, req.ijk_to_target)
    if snap is not None:
        res_block["snapshot"] = result_block(snap, snapshot=snap)["snapshot"]
    segment = target.segmentation_node.GetSegmentation().GetSegment(target.segment_id)
    entry = make_entry(kind, image, prompt, window_block(req.normalization), model, res_block,
                       segment_id=target.segment_id, segment_name=segment.GetName(), plane_axis=axis,
                       plane_index=index, model_seconds=result.seconds, mode=mode, region=region)
    try:
        record = get_record(target.segmentation_node, target.segment_id)
    except RecordError:
        import vtk

        old = vtk.reference("")
        segment.GetTag(TAG, old)
        segment.SetTag(TAG + ".damaged", str(old))
        record = None
    set_record(target.segmentation_node, target.segment_id, append_entry(record, entry))
    if result.prediction is not None:
        try:
            result.prediction._medsam_record_id = entry["id"]  # the next refinement names its mask prompt
        except AttributeError:
            pass
    entry["overhead_s"] = time.perf_counter() - t0  # for the benchmark only; not stored
    return entry


def prompt_markups_from_record(scene, record: dict, segment_id: str | None = None) -> list:
    """Re-create a record's prompts in the scene (world RAS): marker lines (markers runs), one points node
    with the +/- clicks (label in the point's description), one ROI per box. Returns the new nodes."""
    from .markups import line_nodes_from_markers

    flip = np.array([-1.0, -1.0, 1.0])
    nodes = []
    entries = [e for e in record["entries"] if segment_id is None or e["segment"]["id"] == segment_id]
    markers = [m for e in entries for m in markers_from_block(e["prompt"].get("markers"))]
    if markers:
        nodes += line_nodes_from_markers(scene, markers)
    points = [(q, e) for e in entries for q in e["prompt"].get("points") or []]
    if points:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(POINTS_NAME))
        node.CreateDefaultDisplayNodes()
        node.SetAttribute("MedSAM.Prompts", "1")
        for q, e in points:
            n = node.AddControlPointWorld((np.asarray(q["lps"]) * flip).tolist(), "+" if q["label"] else "-")
            node.SetNthControlPointDescription(n, f"{e['kind']} {e['id']} slice {e['plane']['index'] if e['plane'] else ''}")
        nodes.append(node)
    for e in entries:
        box = e["prompt"].get("box")
        if box is None:
            continue
        a, b = np.asarray(box["lps"][0]) * flip, np.asarray(box["lps"][1]) * flip
        roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName("MedSAM box"))
        roi.CreateDefaultDisplayNodes()
        roi.SetAttribute("MedSAM.Prompts", "1")
        roi.SetCenterWorld(((a + b) / 2).tolist())
        roi.SetSize(np.abs(b - a).tolist())
        nodes.append(roi)
    return nodes


def record_batch_result(segmentation_node, segment_id: str, volume_node, plan, result, normalization, engine,
                        seconds: float, markers=None, refine: bool = False, backend_spec: str = "local") -> dict:
    """Headless batch (medsamkit.cli.batch): record one case's markers/boxes run on its segment (tag), before
    the .seg.nrrd is saved. Returns the record (the caller writes the sidecar once the file is saved)."""
    from .volumes import ijk_to_world

    shape = tuple(np.asarray(result.mask).shape)
    image = _image_block(shape, ijk_to_world(volume_node))
    prompt = prompt_block(image)
    prompt["plan"] = plan_block(plan)
    prompt["markers"] = markers_block(markers) if markers else None
    prompt["options"] = {"refine": bool(refine)}
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    entry = make_entry("batch", image, prompt, window_block(normalization), model_of(engine, backend_spec),
                       result_block(result.mask, scores=result.scores, slices=result.slices, snapshot=result.mask),
                       segment_id=segment_id, segment_name=name, plane_axis=plan.axis, model_seconds=seconds,
                       region="volume")
    record = append_entry(None, entry)
    set_record(segmentation_node, segment_id, record)
    return record
