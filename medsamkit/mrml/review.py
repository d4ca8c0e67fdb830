"""The review queue in a scene (issue 16): walk a segment's newest 3D result, most suspicious slice first.

:class:`SegmentReview` ranks the slices of the segment's newest markers / propagation / batch / RECIST
run (:func:`medsamkit.review.queue_from_entry`, the ranking the report uses) on the segment as it is now,
and :meth:`SegmentReview.next` gives the next slice not reviewed yet with a point on it (the mask's
centre on that slice) that :func:`jump_slice_views` brings into every slice view. Main thread (MRML).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

#: record kinds whose entries are 3D runs with per-slice scores (medsamkit.records.KINDS)
THREE_D_KINDS = ("markers", "propagate", "batch", "recist")


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
        from ..review import queue_from_entry
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

    @property
    def remaining(self) -> int:
        return sum(not item.reviewed for item in self.queue)

    def next(self):
        """-> (SliceReview, RAS point on that slice), marking the slice reviewed; None when all are reviewed."""
        from ..review import next_to_review
        from ..volume import extract_slice

        item = next_to_review(self.queue)
        if item is None:
            return None
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
