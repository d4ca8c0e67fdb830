"""DICOM SR TID 1500 measurement reports -> lesions with their linear measurements (and back).

Reading (:func:`read_report`): pydicom decodes the file; the TID 1500 tree is walked by concept
codes. Under "Imaging Measurements" (DCM 126010) every "Measurement Group" (DCM 125007) is read
for its Tracking Identifier (DCM 112039), Tracking Unique Identifier (DCM 112040), Finding (DCM
121071) and Finding Site (SCT 363698007; old SRT G-C0E3), and every spatial coordinate item at any
depth of the group:

- ``SCOORD`` POLYLINE of 2 points: a line on one image, given in (column, row) image coordinates
  with the SOP Instance UID (and frame) of that image in its "selected from" IMAGE child. Both
  layouts seen in practice are read: the SCOORD as the group's "Image Region" (TID 1410), or as the
  "inferred from" child of a NUM such as "Long axis" (SCT 103339001) / "Short axis" (SCT 103340004)
  / "Length" / "Diameter" (TID 300, as OHIF/dcmjs and highdicom write RECIST measurements);
- ``SCOORD3D`` POLYLINE of 2 points: a line in patient LPS mm in a Frame of Reference.

The line's name is the NUM's concept (e.g. "Long axis") when there is one. Groups sharing one
Tracking Identifier are one lesion (a reader may record each slice's axes in its own group).
Items that are not lines (a circle, a closed polygon, a volume) are listed in the report's
``other_items``; a "line" with one point (or two equal points) is a problem of its lesion.

Coordinates (PS3.3 C.18.6.1.1): SCOORD (0, 0) is the top-left corner of the top-left pixel, so a
pixel centre (column c, row r) is (c + 0.5, r + 0.5); :func:`medsamkit.dicom.series.image_point_to_lps`
converts. Lines come out as :class:`medsamkit.markers.Marker` (RAS mm) on a chosen series with
:func:`lesion_markers`; errors name the SR file, the lesion and the line.

Writing such reports: :mod:`.sr_write`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import LPS_TO_RAS
from . import require_dicom

IMAGING_MEASUREMENTS = {("DCM", "126010")}
MEASUREMENT_GROUP = {("DCM", "125007")}
TRACKING_ID = {("DCM", "112039")}
TRACKING_UID = {("DCM", "112040")}
FINDING = {("DCM", "121071")}
FINDING_SITE = {("SCT", "363698007"), ("SRT", "G-C0E3")}
LINEAR_CONCEPTS = {("SCT", "103339001"): "Long axis", ("SRT", "G-A185"): "Long axis",
                   ("SCT", "103340004"): "Short axis", ("SRT", "G-A186"): "Short axis",
                   ("SCT", "410668003"): "Length", ("SRT", "G-A22A"): "Length",
                   ("SCT", "81827009"): "Diameter", ("SRT", "M-02550"): "Diameter"}
#: What a SEG segment of a lesion is coded as when the SR gives no finding.
DEFAULT_FINDING = ("108369006", "SCT", "Neoplasm")


@dataclass
class SRLine:
    """One 2-point line of a measurement group, in image coordinates (SCOORD) or LPS (SCOORD3D).

    image_xy: (2, 2) float (column, row) with (0, 0) at the top-left pixel's corner, on image
    ``sop_uid`` (``frame`` for multi-frame images); lps: (2, 3) float mm in ``frame_of_reference``.
    n_points: points in the item (a valid line has 2 distinct ones). value_mm: the NUM recorded
    with the line (the reader's measured length), when there is one.
    """

    name: str
    n_points: int
    image_xy: np.ndarray | None = None
    sop_uid: str | None = None
    frame: int | None = None
    lps: np.ndarray | None = None
    frame_of_reference: str | None = None
    value_mm: float | None = None


@dataclass
class SRLesion:
    """The measurement groups of one tracking identifier. Codes are (value, scheme, meaning)."""

    name: str
    tracking_uid: str = ""
    finding: tuple | None = None
    finding_site: tuple | None = None
    lines: list = field(default_factory=list)
    groups: int = 0


@dataclass
class MeasurementReport:
    path: Path
    lesions: list = field(default_factory=list)
    other_items: list = field(default_factory=list)   # "group 'X': CIRCLE Image Region", ...
    study_uid: str = ""
    patient_id: str = ""
    sop_uid: str = ""

    @property
    def referenced_sop_uids(self) -> set:
        return {ln.sop_uid for les in self.lesions for ln in les.lines if ln.sop_uid}

    @property
    def frames_of_reference(self) -> set:
        return {ln.frame_of_reference for les in self.lesions for ln in les.lines if ln.frame_of_reference}


def _code(item) -> tuple:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return ("", "", "")
    c = seq[0]
    return (str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeValue", "") or c.get("LongCodeValue", "")),
            str(c.get("CodeMeaning", "")))


def _is(item, codes: set) -> bool:
    return _code(item)[:2] in codes


def _value_code(item) -> tuple | None:
    seq = item.get("ConceptCodeSequence")
    if not seq:
        return None
    c = seq[0]
    return (str(c.get("CodeValue", "")), str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeMeaning", "")))


def _num_mm(item) -> float | None:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return None
    mv = seq[0]
    try:
        value = float(mv.NumericValue)
    except (AttributeError, TypeError, ValueError):
        return None
    unit = str(mv.MeasurementUnitsCodeSequence[0].CodeValue) if mv.get("MeasurementUnitsCodeSequence") else "mm"
    return {"mm": value, "cm": 10.0 * value, "um": value / 1000.0}.get(unit)


def read_report(path: "str | os.PathLike") -> MeasurementReport:
    """Read a TID 1500 SR file -> :class:`MeasurementReport` (lesions in document order).

    Raises InputError naming the file: not readable as DICOM, not a structured report, not a
    TID 1500 measurement report (no "Imaging Measurements" container), no measurement group.
    A report without any line is returned as is: :func:`check_has_lines` turns that into an error.
    """
    pydicom, _ = require_dicom()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SR file not found: {path}")
    try:
        ds = pydicom.dcmread(path)
        content = ds.get("ContentSequence")
        modality = str(ds.get("Modality", ""))
        if content is None and modality == "SR":  # pydicom stops quietly at the end of a truncated file
            raise EOFError("the document content is missing (truncated file?)")
    except Exception as exc:  # damaged files raise many types inside pydicom
        raise InputError(f"{path}: cannot read this SR file ({type(exc).__name__}: {str(exc)[:160]}). Is the file "
                         "complete? Export the structured report again from the PACS.") from exc
    if modality != "SR" or content is None:
        raise InputError(f"{path} is not a DICOM structured report (Modality '{modality}'); give the SR that holds "
                         "the RECIST measurements (--sr FILE).")
    report = MeasurementReport(path, study_uid=str(ds.get("StudyInstanceUID", "")),
                               patient_id=str(ds.get("PatientID", "")), sop_uid=str(ds.get("SOPInstanceUID", "")))
    containers = [it for it in _walk(content) if _is(it, IMAGING_MEASUREMENTS)]
    if not containers:
        raise InputError(f"{path} is a structured report but not a TID 1500 measurement report (no 'Imaging "
                         "Measurements' container); export the reader's measurements as a DICOM SR measurement report.")
    by_name: dict[str, SRLesion] = {}
    n_group = 0
    for container in containers:
        for group in container.get("ContentSequence") or []:
            if not _is(group, MEASUREMENT_GROUP):
                continue
            n_group += 1
            _read_group(group, n_group, by_name, report)
    if n_group == 0:
        raise InputError(f"{path}: the measurement report holds no measurement group; there is nothing to segment.")
    report.lesions = list(by_name.values())
    return report


def _walk(items):
    for it in items or []:
        yield it
        yield from _walk(it.get("ContentSequence"))


def _read_group(group, n_group: int, by_name: dict, report: MeasurementReport) -> None:
    children = group.get("ContentSequence") or []
    tid = next((str(c.TextValue) for c in children if _is(c, TRACKING_ID) and "TextValue" in c), "")
    tuid = next((str(c.UID) for c in children if _is(c, TRACKING_UID) and "UID" in c), "")
    name = tid or tuid or f"group {n_group}"
    lesion = by_name.setdefault(name, SRLesion(name, tuid))
    lesion.groups += 1
    lesion.tracking_uid = lesion.tracking_uid or tuid
    for c in children:
        if _is(c, FINDING) and lesion.finding is None:
            lesion.finding = _value_code(c)
        if _is(c, FINDING_SITE) and lesion.finding_site is None:
            lesion.finding_site = _value_code(c)
    _collect_lines(children, lesion, report, parent=None)


def _collect_lines(items, lesion: SRLesion, report: MeasurementReport, parent) -> None:
    for it in items or []:
        vt = str(it.get("ValueType", ""))
        if vt in ("SCOORD", "SCOORD3D"):
            _add_line(it, vt, lesion, report, parent)
        elif "ContentSequence" in it:
            _collect_lines(it.ContentSequence, lesion, report, parent=it if vt == "NUM" else parent)


def _add_line(item, vt: str, lesion: SRLesion, report: MeasurementReport, parent) -> None:
    gtype = str(item.get("GraphicType", ""))
    data = np.asarray([float(v) for v in (item.get("GraphicData") or [])], dtype=float)
    dim = 2 if vt == "SCOORD" else 3
    n_points = data.size // dim
    concept = _code(parent)[:2] if parent is not None else _code(item)[:2]
    label = LINEAR_CONCEPTS.get(concept) or (_code(parent)[2] if parent is not None else "") or _code(item)[2] or gtype
    linear = concept in LINEAR_CONCEPTS
    if gtype not in ("POLYLINE", "POINT", "MULTIPOINT") or (gtype == "POLYLINE" and n_points > 2) \
            or (gtype in ("POINT", "MULTIPOINT") and not linear):
        report.other_items.append(f"lesion '{lesion.name}': {gtype} {vt} '{label}' ({n_points} points)")
        return
    line = SRLine(f"{label} {sum(1 for ln in lesion.lines if ln.name.startswith(label)) + 1}", n_points,
                  value_mm=_num_mm(parent) if parent is not None else None)
    pts = data[: n_points * dim].reshape(n_points, dim)
    if vt == "SCOORD":
        line.image_xy = pts
        ref = next((c for c in (item.get("ContentSequence") or []) if c.get("ValueType") == "IMAGE"), None)
        if ref is not None and ref.get("ReferencedSOPSequence"):
            sop = ref.ReferencedSOPSequence[0]
            line.sop_uid = str(sop.ReferencedSOPInstanceUID)
            frames = sop.get("ReferencedFrameNumber")
            if frames not in (None, ""):
                line.frame = int(frames[0]) if isinstance(frames, (list, tuple)) or type(frames).__name__ == "MultiValue" \
                    else int(frames)
    else:
        line.lps = pts
        line.frame_of_reference = str(item.get("ReferencedFrameOfReferenceUID", "")) or None
    lesion.lines.append(line)


def check_has_lines(report: MeasurementReport) -> None:
    """Raise InputError when no lesion of the report has a line (naming what the report does hold)."""
    if any(les.lines for les in report.lesions):
        return
    held = "; ".join(report.other_items[:4]) or "no spatial coordinates at all"
    raise InputError(f"{report.path}: the measurement report has {len(report.lesions)} measurement group(s) but no "
                     f"linear measurement (2-point SCOORD/SCOORD3D polyline). It holds: {held}. RECIST needs the "
                     "reader's long/short axis lines; measure the lesions with a line/bidirectional tool.")


# ----------------------------------------------------------------------------------------------
# Lines on a series
# ----------------------------------------------------------------------------------------------
def line_lps(line: SRLine, series, report_path, lesion_name: str) -> np.ndarray:
    """(2, 3) LPS mm of a line on ``series`` (a :class:`medsamkit.dicom.series.DicomSeries`).

    Raises InputError naming the SR file, lesion and line: fewer than 2 distinct points, an image
    not in the series, a Frame of Reference other than the series'.
    """
    from .series import image_point_to_lps

    where = f"{report_path}, lesion '{lesion_name}', line '{line.name}'"
    if line.n_points < 2:
        raise DegenerateLine(f"{where}: has {line.n_points} point(s); a linear measurement needs 2 end points. Measure "
                         "the axis again as a line (or remove the point from the report).")
    if line.lps is not None:
        if line.frame_of_reference and series.frame_of_reference and line.frame_of_reference != series.frame_of_reference:
            raise InputError(f"{where}: is in Frame of Reference {line.frame_of_reference}, but the series "
                             f"({series.description}) is in {series.frame_of_reference}. The line was measured on "
                             "another acquisition; give the study folder that holds that series.")
        pts = line.lps[:2]
    else:
        k = series.slice_of(line.sop_uid) if line.sop_uid else None
        if k is not None and hasattr(series, "frame_slice"):  # a multi-frame image: the line names its frame
            k = series.frame_slice(line.sop_uid, line.frame)
        if k is None:
            raise InputError(f"{where}: refers to image {line.sop_uid or '(no image reference)'}, which is not a "
                             f"slice of {series.description}. Export the series the lines were measured on with the SR.")
        pts = image_point_to_lps(series.headers[k], line.image_xy[:2])
    if np.linalg.norm(pts[1] - pts[0]) < 1e-6:
        raise DegenerateLine(f"{where}: both end points are the same point; a linear measurement needs two. Measure the "
                         "axis again.")
    return pts


class DegenerateLine(InputError):
    """A "line" with one point, or two equal points."""


def lesion_markers(lesion: SRLesion, series, report_path, warnings: list | None = None,
                   dropped_mm: list | None = None) -> list:
    """The lesion's lines as :class:`medsamkit.markers.Marker` (RAS mm) on ``series``; see :func:`line_lps`.

    A degenerate line (one point, two equal points) beside valid lines is left out and said in
    ``warnings`` (a reader's slip must not cost the lesion), its recorded length (NUM, mm) added to
    ``dropped_mm``; when no valid line remains, or on any other problem, InputError.
    """
    from ..markers import Marker

    if not lesion.lines:
        raise InputError(f"{report_path}, lesion '{lesion.name}': has no linear measurement (only other items); "
                         "nothing to segment.")
    markers, skipped = [], []
    for line in lesion.lines:
        try:
            lps = line_lps(line, series, report_path, lesion.name)
        except DegenerateLine as exc:
            skipped.append(exc)
            if dropped_mm is not None and line.value_mm:
                dropped_mm.append(float(line.value_mm))  # the length the reader recorded stays a measurement
            continue
        markers.append(Marker(LPS_TO_RAS @ lps[0], LPS_TO_RAS @ lps[1], f"{lesion.name}: {line.name}"))
    if not markers:
        raise skipped[0]
    if warnings is not None:
        warnings.extend(f"{exc} Left out; the other lines were used." for exc in skipped)
    return markers


def select_series(report: MeasurementReport, index, series_uid: str | None = None):
    """The series of ``index`` (:class:`medsamkit.dicom.series.FolderIndex`) the report's lines were measured on.

    series_uid: pick this one. Else the series holding most of the referenced images; for SCOORD3D-only
    reports the one series in the lines' Frame of Reference. Raises InputError naming the SR file when no
    series of the folder matches (listing what the folder holds) or when the choice is ambiguous.
    """
    if series_uid:
        if series_uid not in index.series:
            raise InputError(f"Series {series_uid} is not in {index.folder} ({index.summary()}).")
        return index.series[series_uid]
    refs = report.referenced_sop_uids
    if refs:
        counts = {uid: sum(1 for r in refs if s.slice_of(r) is not None) for uid, s in index.series.items()}
        best = max(counts, key=counts.get) if counts else None
        if best is not None and counts[best] > 0:
            return index.series[best]
        for uids, reason in index.rejected.values():  # the measured series is there but not one volume
            if uids & set(refs):
                raise InputError(f"{report.path}: its lines were measured on a series that cannot be read as one "
                                 f"volume: {reason}")
        broken = [str(p) for p in index.corrupt]
        hint = f" {len(broken)} damaged DICOM file(s) could not be read: {', '.join(broken[:3])}." if broken else ""
        unread = [p for p in index.multiframe if p in index.corrupt]
        if unread:
            hint += (f" {len(unread)} multi-frame (enhanced) image file(s) could not be read as a volume: "
                     f"{index.corrupt[unread[0]]}")
        raise InputError(f"{report.path}: its lines refer to {len(refs)} image(s) (e.g. {sorted(refs)[0]}) that are "
                         f"not in {index.folder} ({index.summary()}).{hint} Export the measured series together "
                         "with the SR.")
    fors = report.frames_of_reference
    matches = [s for s in index.series.values() if s.frame_of_reference in fors]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(f"{report.path}: its 3D lines are in Frame(s) of Reference {', '.join(sorted(fors)) or '?'}; "
                         f"no series of {index.folder} is ({index.summary()}).")
    raise InputError(f"{report.path}: {len(matches)} series share the lines' Frame of Reference "
                     f"({'; '.join(s.description + ' ' + s.uid for s in matches)}); choose one with --series UID.")
