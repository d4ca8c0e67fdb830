"""Read a DICOM SEG back onto a series' grid (highdicom), to check what medsamkit.dicom.seg wrote."""
from __future__ import annotations

import os

import numpy as np

from medsamkit.dicom import require_dicom
from medsamkit.errors import InputError


def read_seg_masks(path: "str | os.PathLike", series) -> dict:
    """A DICOM SEG (any writer) -> {segment label: bool (K, J, I) mask on ``series``' grid} (highdicom).

    Frames are placed by their Referenced SOP Instance UID, so the result is in the series' slice order
    whatever the SEG's frame order. Raises InputError when the SEG does not reference the series.
    """
    _, hd = require_dicom()
    seg = hd.seg.segread(str(path))
    out = {}
    uids = series.sop_uids
    for desc in seg.SegmentSequence:
        number = int(desc.SegmentNumber)
        arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number],
                                                ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
        out[str(desc.SegmentLabel)] = np.asarray(arr[..., 0]) > 0
    if not out:
        raise InputError(f"{path} holds no segment.")
    return out
