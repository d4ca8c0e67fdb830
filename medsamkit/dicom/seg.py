"""Lesion masks -> one DICOM Segmentation (highdicom) referencing the source series; and back.

One segment per lesion (BINARY, so lesions may overlap): label = the lesion's tracking identifier,
tracking identifier/UID = those of its measurement group in the SR, category "Morphologically
abnormal structure" (SCT 49755003), type = the SR's Finding (default "Neoplasm", SCT 108369006),
anatomic region = the SR's Finding Site, algorithm SEMIAUTOMATIC (a model prompted by a reader's
lines) identified by model kind and version. Frame k of the mask stack is slice k of the series
(:class:`medsamkit.dicom.series.DicomSeries` order), so the SEG's per-frame Source Image references
point at the measured images. Empty frames are omitted (highdicom's default).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import require_dicom
from .sr import DEFAULT_FINDING

MORPHOLOGICALLY_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
#: Distinct, readable colours (CIELab via RGB) for up to 8 lesions, then repeated.
SEGMENT_COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                  (70, 240, 240), (240, 50, 230))


@dataclass
class SegmentSpec:
    """What one segment is: its mask (K, J, I) on the series' grid and its description."""

    mask: np.ndarray
    label: str
    tracking_uid: str = ""
    finding: tuple | None = None         # (value, scheme, meaning)
    finding_site: tuple | None = None


def write_seg(segments: "list[SegmentSpec]", series, path: "str | os.PathLike", algorithm_name: str = "medsamkit",
              algorithm_version: str = "", series_description: str = "MedSAM RECIST lesions"):
    """Write a DICOM SEG with one segment per :class:`SegmentSpec`, atomically -> the pydicom Dataset written.

    Raises InputError: no segment, a mask whose shape is not the series' (K, J, I), an empty mask
    (a SEG segment must cover at least one voxel).
    """
    _, hd = require_dicom()
    from ..io import atomic_output

    if not segments:
        raise InputError("No lesion mask to write into the DICOM SEG.")
    shape = tuple(series.geometry.shape)
    stack = np.zeros(shape + (len(segments),), dtype=np.uint8)
    descriptions = []
    for n, spec in enumerate(segments):
        mask = np.asarray(spec.mask) > 0
        if mask.shape != shape:
            raise InputError(f"Lesion '{spec.label}': mask shape {mask.shape} is not the series' {shape}.")
        if not mask.any():
            raise InputError(f"Lesion '{spec.label}': the mask is empty; a DICOM SEG segment needs at least one voxel.")
        stack[..., n] = mask
        finding = spec.finding or DEFAULT_FINDING
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=str(spec.label)[:64],
            segmented_property_category=hd.sr.CodedConcept(*MORPHOLOGICALLY_ABNORMAL),
            segmented_property_type=hd.sr.CodedConcept(*finding),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=algorithm_name[:64], version=algorithm_version[:64] or "0",
                family=hd.sr.CodedConcept("130400", "DCM", "Artificial Intelligence")),
            tracking_uid=spec.tracking_uid or hd.UID(), tracking_id=str(spec.label)[:64],
            anatomic_regions=[hd.sr.CodedConcept(*spec.finding_site)] if spec.finding_site else None,
            display_color=hd.color.CIELabColor.from_rgb(*SEGMENT_COLORS[n % len(SEGMENT_COLORS)])))
    from .. import __version__

    if hasattr(series, "to_source_order"):  # a multi-frame image: frames in the file's order
        stack = series.to_source_order(stack)
    seg = hd.seg.Segmentation(
        source_images=getattr(series, "source_images", None) or list(series.headers), pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=901, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medsamkit", manufacturer_model_name="medsamkit recist", software_versions=__version__,
        device_serial_number="0", series_description=series_description)
    path = Path(path)
    with atomic_output(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return seg
