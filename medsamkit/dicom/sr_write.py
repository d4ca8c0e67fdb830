"""Writing TID 1500 measurement reports (highdicom): lesions' lines, and lesions' volumes linked to a SEG.

- :func:`write_linear_report`: lines of lesions -> one group per lesion whose "Long axis"/"Short
  axis"/"Length" NUMs are inferred from 2-point SCOORD polylines on the measured images (the TID 300
  layout reading workstations and OHIF store; :mod:`.sr` reads it back);
- :func:`write_volume_report`: one TID 1411 group per lesion with its volume and the mask's longest
  in-plane diameter, referencing the lesion's SEG segment and the source series.

Both write a Comprehensive 3D SR atomically (temporary file renamed into place).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import require_dicom
from .sr import DEFAULT_FINDING


def _axis_concept(name: str):
    from pydicom.sr.codedict import codes

    low = name.lower()
    if low.startswith("long"):
        return codes.SCT.LongAxis
    if low.startswith("short"):
        return codes.SCT.ShortAxis
    return codes.SCT.Length


def _coded(code):
    import highdicom as hd

    return None if code is None else hd.sr.CodedConcept(code[0], code[1], code[2])


def _observation_context(hd, device_name: str):
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=device_name)))


def _procedure(series):
    import highdicom as hd

    return (hd.sr.CodedConcept("25045-6", "LN", "CT unspecified body region") if series.modality == "CT"
            else hd.sr.CodedConcept("25056-3", "LN", "MRI unspecified body region"))


def _save(sr, path: Path) -> Path:
    from ..io import atomic_output

    with atomic_output(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return path


def write_linear_report(lesions, series, path: "str | os.PathLike", finding=DEFAULT_FINDING,
                        finding_site=None, device_name: str = "medsamkit") -> Path:
    """Write lesions' lines as a TID 1500 report (Comprehensive 3D SR), atomically.

    lesions: [(tracking identifier, [Marker, ...]), ...] in RAS mm; each line must lie within one
    slice of ``series`` (a :class:`medsamkit.dicom.series.DicomSeries`). A line named "long..." /
    "short..." is stored as a "Long axis" / "Short axis" NUM (its length in mm), others as "Length";
    each NUM is inferred from a 2-point SCOORD POLYLINE on its slice's image. finding /
    finding_site: (value, scheme, meaning) codes for every group. Raises InputError for a line off
    the series' slices.
    """
    _, hd = require_dicom()
    from pydicom.sr.codedict import codes

    geometry = series.geometry
    groups = []
    for name, markers in lesions:
        measurements = []
        for m in markers:
            ijk = geometry.ras_to_ijk_points([m.start_ras, m.end_ras])
            k = int(round(float(ijk[:, 2].mean())))
            if abs(ijk[0, 2] - ijk[1, 2]) > 0.5 or not 0 <= k < geometry.shape[0]:
                raise InputError(f"Lesion '{name}', line '{m.name}': not within one slice of {series.description}; "
                                 "an SR line is stored on one image.")
            header = series.headers[k]
            xy = (ijk[:, :2] + 0.5).astype(np.float32)  # pixel centre (i, j) -> SCOORD (column, row)
            region = hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=xy,
                source_image=hd.sr.SourceImageForRegion(str(header.SOPClassUID), str(header.SOPInstanceUID),
                                                        referenced_frame_numbers=[series.frames[k]]
                                                        if hasattr(series, "frames") else None))
            measurements.append(hd.sr.Measurement(name=_axis_concept(m.name), value=round(m.length_mm, 3),
                                                  unit=codes.UCUM.Millimeter, referenced_coordinates=[region]))
        sites = [hd.sr.FindingSite(_coded(finding_site))] if finding_site else None
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=str(name)),
            finding_type=_coded(finding), finding_sites=sites, measurements=measurements))
    report = hd.sr.MeasurementReport(observation_context=_observation_context(hd, device_name),
                                     procedure_reported=_procedure(series), imaging_measurements=groups)
    evidence = getattr(series, "source_images", None) or list(series.headers)  # a multi-frame image: the file
    sr = hd.sr.Comprehensive3DSR(evidence=evidence, content=report, series_instance_uid=hd.UID(),
                                 series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
                                 manufacturer="medsamkit", is_complete=True)
    return _save(sr, Path(path))


def write_volume_report(rows, seg_dataset, series, path: "str | os.PathLike", device_name: str = "medsamkit") -> Path:
    """Write the lesions' volumes as a TID 1500 report linked to their SEG segments, atomically.

    rows: [{"segment_number", "lesion", "tracking_uid", "volume_ml", "mask_long_mm", "finding",
    "finding_site"}, ...] (codes as (value, scheme, meaning)); seg_dataset: the written SEG
    (pydicom Dataset); one TID 1411 group per row with "Volume" (cm3) and "Long axis" (mm, longest
    in-plane diameter of the mask), referencing the segment and the source series.
    """
    _, hd = require_dicom()
    from pydicom.sr.codedict import codes

    groups = []
    for row in rows:
        segment = hd.sr.ReferencedSegment(sop_class_uid=str(seg_dataset.SOPClassUID),
                                          sop_instance_uid=str(seg_dataset.SOPInstanceUID),
                                          segment_number=int(row["segment_number"]),
                                          source_series=hd.sr.SourceSeriesForSegmentation(series.uid))
        measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=round(float(row["volume_ml"]), 4),
                                          unit=hd.sr.CodedConcept("cm3", "UCUM", "cubic centimeter"))]
        if row.get("mask_long_mm"):
            measurements.append(hd.sr.Measurement(name=codes.SCT.LongAxis, value=round(float(row["mask_long_mm"]), 3),
                                                  unit=codes.UCUM.Millimeter))
        sites = [hd.sr.FindingSite(_coded(row["finding_site"]))] if row.get("finding_site") else None
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=row.get("tracking_uid") or hd.UID(),
                                                         identifier=str(row["lesion"])),
            referenced_segment=segment, finding_type=_coded(row.get("finding") or DEFAULT_FINDING),
            finding_sites=sites, measurements=measurements))
    report = hd.sr.MeasurementReport(observation_context=_observation_context(hd, device_name),
                                     procedure_reported=_procedure(series), imaging_measurements=groups)
    evidence = [seg_dataset] + (getattr(series, "source_images", None) or list(series.headers))
    sr = hd.sr.Comprehensive3DSR(evidence=evidence, content=report,
                                 series_instance_uid=hd.UID(), series_number=902, sop_instance_uid=hd.UID(),
                                 instance_number=1, manufacturer="medsamkit", is_complete=True)
    return _save(sr, Path(path))
