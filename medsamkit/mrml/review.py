"""The review queue in a scene: walk a segment's newest 3D result, most suspicious slice first.

:class:`SegmentReview` ranks the slices of the segment's newest markers / propagation / batch / RECIST
run (:func:`medsamkit.records.review.queue_from_entry`, the ranking the report uses) on the segment as it is now,
and :meth:`SegmentReview.next` gives the next slice not reviewed yet with a point on it (the mask's
centre on that slice) that :func:`jump_slice_views` brings into every slice view. The slices reviewed
are kept in a segment tag (:data:`REVIEW_TAG`), saved with the scene and the .seg.nrrd, and picked up
by the next SegmentReview of the same run; once every slice was reviewed (``next`` returns None) the
marks are cleared, so the next walk starts over. Main thread (MRML).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

#: record kinds whose entries are 3D runs with per-slice scores (medsamkit.records.record.KINDS)
THREE_D_KINDS = ("markers", "propagate", "batch", "recist")
#: Segment tag holding the review marks: {"entry": ID of the reviewed run, "slices": [reviewed slice indices]}.
#: Segment tags are saved with the scene and in the .seg.nrrd, so the marks outlive the session.
REVIEW_TAG = "MedSAM.Reviewed"


def get_review_marks(segmentation_node, segment_id: str, entry_id: str) -> set:
    """Slices of run ``entry_id`` marked reviewed on the segment (empty for marks of another run or
    an unreadable tag: the queue then starts afresh)."""
    import json
    from urllib.parse import unquote

    import vtk

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    value = vtk.reference("")
    if segment is None or not segment.GetTag(REVIEW_TAG, value):
        return set()
    try:
        marks = json.loads(unquote(str(value)))
        if not isinstance(marks, dict) or marks.get("entry") != entry_id:
            return set()
        return {int(k) for k in marks.get("slices", []) if isinstance(k, int) and not isinstance(k, bool)}
    except (ValueError, TypeError):
        return set()


def set_review_marks(segmentation_node, segment_id: str, entry_id: str, slices) -> None:
    """Save the reviewed slices of run ``entry_id`` in the segment's tag (URL-quoted JSON, as the record)."""
    import json
    from urllib.parse import quote

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is not None:
        segment.SetTag(REVIEW_TAG, quote(json.dumps({"entry": entry_id, "slices": sorted(int(k) for k in slices)}),
                                         safe=""))


def newest_3d_entry(record: "dict | None", segment_id: str) -> "dict | None":
    """The segment's newest 3D entry in ``record`` (None when it has none)."""
    entries = [e for e in (record or {}).get("entries", [])
               if e["segment"]["id"] == segment_id and e["kind"] in THREE_D_KINDS and e["image"]["is_volume"]]
    return entries[-1] if entries else None


class SegmentReview:
    """The review queue of one segment's newest 3D result (see the module docstring).

    Raises InputError (with what to do) when the segment has no 3D result in its record, when the
    volume is not the one the result was made on, or when the segment is not on the volume's grid;
    RecordError when the record is damaged.
    """

    def __init__(self, volume_node, segmentation_node, segment_id: str):
        from ..records.review import queue_from_entry
        from .records import get_record, segment_snapshot
        from .segments import ijk_to_segmentation
        from .volumes import array_from_volume, ijk_to_world

        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        name = segment.GetName() if segment is not None else segment_id
        entry = newest_3d_entry(get_record(segmentation_node, segment_id), segment_id)
        if entry is None:
            raise InputError(f"Segment '{name}' has no MedSAM 3D result (markers, propagation, batch or RECIST) to "
                             "review; run one first, or load a .seg.nrrd written by medsamkit.")
        shape = tuple(entry["image"]["shape"])
        have = tuple(array_from_volume(volume_node, copy=False).shape)
        if have != shape:
            raise InputError(f"Segment '{name}' was made on a volume of shape {shape}; the source volume has {have}. "
                             "Select the volume it was made on.")
        mask = segment_snapshot(segmentation_node, segment_id, shape, ijk_to_segmentation(volume_node, segmentation_node))
        if mask is None:
            raise InputError(f"Segment '{name}' is not on the source volume's voxel grid (was the segmentation "
                             "resampled?); its slices cannot be matched to the recorded run.")
        self.entry_id = entry["id"]
        self.mask = mask
        self.axis = (entry["prompt"].get("plan") or {}).get("axis", (entry["plane"] or {}).get("axis", 0))
        self.queue = queue_from_entry(mask, entry)
        self._ijk_to_world = ijk_to_world(volume_node)
        self._node, self._segment_id = segmentation_node, segment_id
        done = get_review_marks(segmentation_node, segment_id, self.entry_id)  # marks saved with the scene
        for item in self.queue:
            item.reviewed = item.index in done

    @property
    def remaining(self) -> int:
        return sum(not item.reviewed for item in self.queue)

    def next(self):
        """-> (SliceReview, RAS point on that slice), marking the slice reviewed; None when all are reviewed."""
        from ..records.review import next_to_review
        from ..volume import extract_slice

        item = next_to_review(self.queue)
        if item is None:  # the walk is complete: the next SegmentReview of this run starts over
            set_review_marks(self._node, self._segment_id, self.entry_id, [])
            return None
        set_review_marks(self._node, self._segment_id, self.entry_id,
                         [q.index for q in self.queue if q.reviewed])
        plane = extract_slice(self.mask, item.index, self.axis) > 0
        other = [a for a in range(3) if a != self.axis]
        kji = np.empty(3)
        kji[self.axis] = item.index
        if plane.any():  # the mask's centre on that slice: the views show the structure, not the slice's corner
            rows, cols = np.nonzero(plane)
            kji[other[0]], kji[other[1]] = rows.mean(), cols.mean()
        else:
            kji[other[0]], kji[other[1]] = (plane.shape[0] - 1) / 2, (plane.shape[1] - 1) / 2
        ras = self._ijk_to_world @ np.array([kji[2], kji[1], kji[0], 1.0])
        return item, ras[:3]


def jump_slice_views(scene, ras) -> None:
    """Centre every slice view of ``scene`` on ``ras`` (Slicer's vtkMRMLSliceNode::JumpAllSlices)."""
    import slicer

    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)
