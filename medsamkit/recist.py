"""RECIST measurements (DICOM SR TID 1500) -> 3D lesion masks -> DICOM SEG and a per-lesion table.

One study: a folder holding the measured image series (any nesting, any file order, other series
beside it) and the SR (or an SR given explicitly). :func:`load_study` reads and checks everything
that can fail *before* any model work: the SR, the series it refers to, each lesion's lines (RAS
markers) and its box plan. :func:`segment_study` then segments each lesion through a backend
(:mod:`medsamkit.backend`, the path ``medsamkit markers`` uses: ``set_volume`` once per study,
``segment_plan`` per lesion, see :func:`segment_plan_with_backend`). :func:`write_study` writes all
outputs into a temporary folder renamed into place at the end, so a study folder in the output is
either complete or absent.

Lesions: one per tracking identifier of the SR (:mod:`medsamkit.dicom.sr`). A lesion whose lines
lie on two or more slices becomes the marker plan of :func:`medsamkit.markers.boxes_from_markers`
(boxes interpolated between the measured slices). A lesion measured on one slice only - the usual
RECIST read: long and short axis on the slice of the largest diameter - is by default segmented on
that slice from its lines' box and propagated through the neighbouring slices
(:func:`medsamkit.volume_segmentation.propagate` and its stop rules); ``single_slice="slice"``
keeps it to the measured slice. A lesion that fails (lines off the volume, on another frame of
reference, a one-point line, ...) gets an error row naming the SR file and the lesion; the other
lesions still run.

Per-lesion table (CSV and JSON): volume (mL) of the mask, the longest in-plane diameter of the mask
(maximum Feret diameter over its slices along the plan axis, mm) next to the reader's longest line,
the slices covered, the model (kind, weights, adapter, engine) and seconds.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, MedSAMError
from .markers import DEFAULT_MARGIN_MM
from .progress import CancelFn, ProgressFn, check_cancel, report

SINGLE_SLICE_MODES = ("propagate", "slice")
#: Files of one finished study (``lesions.json`` is written last by the rename, see write_study).
SEG_FILE, NRRD_FILE, NIFTI_FILE, CSV_FILE, JSON_FILE, SR_FILE = (
    "lesions.seg.dcm", "lesions.seg.nrrd", "lesions.nii.gz", "lesions.csv", "lesions.json", "volumes.sr.dcm")
TABLE_COLUMNS = ("study", "lesion", "status", "message", "segment_number", "tracking_uid", "finding", "finding_site",
                 "lines", "measured_slices", "first_slice", "last_slice", "slices_covered", "volume_ml",
                 "reader_long_mm", "mask_long_mm", "axis", "model", "weights", "adapter", "engine", "seconds")


@dataclass
class RecistOptions:
    margin_mm: float = DEFAULT_MARGIN_MM
    refine: bool = False
    window: str = "auto"
    single_slice: str = "propagate"
    series_uid: str | None = None
    write_sr: bool = False


@dataclass
class LesionPlan:
    """A lesion ready to segment: its SR record, its markers (RAS) and box plan - or the error that stops it."""

    lesion: object                      # medsamkit.dicom.sr.SRLesion
    markers: list = field(default_factory=list)
    plan: object = None                 # medsamkit.markers.BoxPlan
    error: str = ""


@dataclass
class Study:
    name: str
    folder: Path
    sr_path: Path
    report: object                      # MeasurementReport
    series: object                      # DicomSeries
    image: object                       # ImageData of the series
    lesions: list = field(default_factory=list)   # LesionPlan
    warnings: list = field(default_factory=list)


@dataclass
class LesionResult:
    lesion: object
    ok: bool
    message: str = ""
    mask: np.ndarray | None = None
    axis: int | None = None
    lines: int = 0
    measured_slices: list = field(default_factory=list)
    seconds: float = 0.0
    warnings: list = field(default_factory=list)


def find_sr(folder: Path) -> Path:
    """The one TID 1500 measurement report in ``folder``; InputError when there is none or several."""
    from .dicom.series import index_folder

    index = index_folder(folder)
    return _one_sr(index)


def _one_sr(index) -> Path:
    from .dicom.sr import read_report

    reports, problems = [], []
    for path in index.sr_files:
        try:
            read_report(path)
        except InputError as exc:  # a key-object note, a dose report, a damaged file
            problems.append(str(exc))
            continue
        reports.append(path)
    if not reports:
        seen = problems + [f"damaged DICOM file {p}" for p in list(index.corrupt)[:3]]
        raise InputError(f"{index.folder} holds no usable DICOM SR measurement report (TID 1500)"
                         + (f" ({'; '.join(seen)})" if seen else "") + ". Export the RECIST measurements with the "
                         "images, or give the SR with --sr FILE.")
    if len(reports) > 1:
        raise InputError(f"{index.folder} holds {len(reports)} measurement reports ({', '.join(str(p) for p in reports)}); "
                         "choose one with --sr FILE.")
    return reports[0]


def load_study(folder: "str | os.PathLike", sr_path: "str | os.PathLike | None" = None,
               options: RecistOptions | None = None, name: str | None = None) -> Study:
    """Read and check a study (module docstring); no model work. Raises InputError for study-level
    problems (no SR, SR without lines, series not in the folder, damaged files in the series);
    lesion-level problems are kept in each :class:`LesionPlan`'s ``error``."""
    from .dicom.series import index_folder
    from .dicom.sr import check_has_lines, read_report, select_series

    options = options or RecistOptions()
    folder = Path(folder)
    index = index_folder(folder)
    sr = Path(sr_path) if sr_path else _one_sr(index)
    report_ = read_report(sr)
    check_has_lines(report_)
    series = select_series(report_, index, options.series_uid)
    damaged = [p for p in index.corrupt if p.parent == series.files[0].parent]
    image = series.read()
    study = Study(name or folder.name, folder, sr, report_, series, image)
    if damaged:
        study.warnings.append(f"{len(damaged)} damaged DICOM file(s) beside the series were skipped: "
                              f"{', '.join(str(p) for p in damaged[:3])}")
    for lesion in report_.lesions:
        study.lesions.append(plan_lesion(lesion, series, sr, options))
    return study


def plan_lesion(lesion, series, sr_path, options: RecistOptions) -> LesionPlan:
    """Markers and box plan of one lesion; a user error is kept in ``error`` (naming file and lesion)."""
    from .dicom.sr import lesion_markers
    from .markers import boxes_from_markers

    item = LesionPlan(lesion)
    try:
        notes: list = []
        item.markers = lesion_markers(lesion, series, sr_path, notes)
        item.plan = boxes_from_markers(item.markers, series.geometry, margin_mm=options.margin_mm)
        item.plan.warnings[:0] = notes
    except InputError as exc:
        msg = str(exc)
        where = f"{sr_path}, lesion '{lesion.name}'"
        item.error = msg if msg.startswith(str(sr_path)) else f"{where}: {msg}"
    return item


def segment_plan_with_backend(backend, plan, refine: bool = False, progress: ProgressFn = None,
                              cancel: CancelFn = None):
    """The engine call of ``medsamkit markers`` (cli_volume.cmd_markers): a BoxPlan -> VolumeSegmentation on
    the volume already set on ``backend``. Kept as one function so a change of the backend API has one place."""
    return backend.segment_plan(plan, refine=refine, progress=progress, cancel=cancel)


def segment_study(backend, study: Study, options: RecistOptions | None = None, progress: ProgressFn = None,
                  cancel: CancelFn = None) -> list:
    """Segment every lesion of ``study`` -> [LesionResult] in SR order. Only Cancelled propagates."""
    options = options or RecistOptions()
    if options.single_slice not in SINGLE_SLICE_MODES:
        raise InputError(f"single_slice must be one of {', '.join(SINGLE_SLICE_MODES)}; got {options.single_slice}.")
    image = study.image
    backend.set_volume(image.array, normalization=options.window, modality=image.modality, direction=image.direction)
    results = []
    for n, item in enumerate(study.lesions):
        check_cancel(cancel)
        report(progress, n, len(study.lesions), f"{study.name}: {item.lesion.name}")
        t0 = time.perf_counter()
        if item.error:
            results.append(LesionResult(item.lesion, False, item.error, lines=len(item.lesion.lines)))
            continue
        try:
            result = _segment_lesion(backend, item, options, cancel)
        except MedSAMError as exc:
            from .progress import Cancelled

            if isinstance(exc, Cancelled):
                raise
            result = LesionResult(item.lesion, False, f"{study.sr_path}, lesion '{item.lesion.name}': {exc}",
                                  lines=len(item.markers))
        result.seconds = time.perf_counter() - t0
        results.append(result)
    report(progress, len(study.lesions), len(study.lesions), f"{study.name}: done")
    return results


def _segment_lesion(backend, item: LesionPlan, options: RecistOptions, cancel) -> LesionResult:
    plan = item.plan
    warnings = list(plan.warnings)
    if len(plan.marked) == 1 and options.single_slice == "propagate":
        k = plan.marked[0]
        res = backend.propagate(k, plan.axis, box=[float(v) for v in plan.boxes[k]], cancel=cancel)
        warnings = [f"Measured on slice {k} only: segmented there from the lines' box and propagated to "
                    f"slices {res.slices[0]}..{res.slices[-1]}."] + list(res.warnings)
    else:
        res = segment_plan_with_backend(backend, plan, refine=options.refine, cancel=cancel)
        warnings += [w for w in res.warnings if w not in warnings]
    mask = np.asarray(res.mask, dtype=np.uint8)
    if not mask.any():
        return LesionResult(item.lesion, False, f"lesion '{item.lesion.name}': the model returned an empty mask on "
                            f"slices {plan.marked}; check the lines and the intensity window (--window).",
                            lines=len(item.markers), measured_slices=list(plan.marked), axis=plan.axis)
    return LesionResult(item.lesion, True, "; ".join(warnings), mask, plan.axis, len(item.markers),
                        list(plan.marked), warnings=warnings)


# ----------------------------------------------------------------------------------------------
# Measurements of a mask
# ----------------------------------------------------------------------------------------------
def mask_long_diameter_mm(mask: np.ndarray, geometry, axis: int) -> float:
    """Longest in-plane diameter (maximum Feret diameter between pixel centres, mm) over the slices along numpy ``axis``."""
    from .reader import axis_lines_2d
    from .volume import extract_slice

    spacing = np.asarray(geometry.slice_spacing_xy(axis), dtype=float)
    other = tuple(a for a in range(3) if a != axis)
    best = 0.0
    for k in np.nonzero(np.asarray(mask).any(axis=other))[0]:
        long_xy, _ = axis_lines_2d(extract_slice(mask, int(k), axis) > 0, tuple(spacing))
        best = max(best, float(np.linalg.norm((long_xy[1] - long_xy[0]) * spacing)))
    return best


def _code_text(code) -> str:
    return "" if not code else f"{code[2]} ({code[1]} {code[0]})"


def lesion_rows(study: Study, results: list, model: dict) -> list[dict]:
    """The per-lesion table (TABLE_COLUMNS); successful lesions get consecutive segment numbers."""
    geometry = study.series.geometry
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    rows, number = [], 0
    for res in results:
        les = res.lesion
        line_lengths = [m.length_mm for item in study.lesions if item.lesion is les for m in item.markers]
        row = {"study": study.name, "lesion": les.name, "status": "ok" if res.ok else "error",
               "message": res.message, "segment_number": "", "tracking_uid": les.tracking_uid,
               "finding": _code_text(les.finding), "finding_site": _code_text(les.finding_site),
               "lines": res.lines, "measured_slices": " ".join(str(k) for k in res.measured_slices),
               "first_slice": "", "last_slice": "", "slices_covered": 0, "volume_ml": "",
               "reader_long_mm": round(max(line_lengths), 2) if line_lengths else "", "mask_long_mm": "",
               "axis": "" if res.axis is None else res.axis, "model": model.get("model", ""),
               "weights": model.get("weights", ""), "adapter": model.get("adapter", ""),
               "engine": model.get("engine", ""), "seconds": round(res.seconds, 2)}
        if res.ok:
            number += 1
            other = tuple(a for a in range(3) if a != res.axis)
            covered = np.nonzero(res.mask.any(axis=other))[0]
            row.update(segment_number=number, first_slice=int(covered[0]), last_slice=int(covered[-1]),
                       slices_covered=int(covered.size), volume_ml=round(float(res.mask.sum()) * voxel_ml, 3),
                       mask_long_mm=round(mask_long_diameter_mm(res.mask, geometry, res.axis), 2))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------
def study_done(out_dir: Path) -> bool:
    """A study's output folder is complete (write_study renames the whole folder into place last)."""
    return (Path(out_dir) / JSON_FILE).is_file()


def write_study(out_dir: "str | os.PathLike", study: Study, results: list, model: dict,
                options: RecistOptions | None = None) -> dict:
    """Write SEG, .seg.nrrd, .nii.gz, CSV, JSON (and the volumes SR) into ``out_dir`` atomically -> the rows.

    Everything is written into a temporary folder beside ``out_dir`` that replaces ``out_dir`` only when
    all files are written. With no successful lesion only the table files are written (naming each
    lesion's error). Raises InputError when ``out_dir`` exists and is not a finished study of ours.
    """
    from .dicom.seg import SegmentSpec, write_seg
    from .dicom.sr_write import write_volume_report
    from .io import write_mask
    from .segmentation_file import write_segmentation

    options = options or RecistOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not study_done(out_dir):
        raise InputError(f"{out_dir} exists but is not a finished medsamkit recist output; remove it or choose "
                         "another --out folder.")
    rows = lesion_rows(study, results, model)
    ok = [r for r in results if r.ok]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        written = []
        if ok:
            specs = [SegmentSpec(r.mask, r.lesion.name, r.lesion.tracking_uid, r.lesion.finding,
                                 r.lesion.finding_site) for r in ok]
            seg = write_seg(specs, study.series, tmp / SEG_FILE, algorithm_name=model.get("model", "medsamkit"),
                            algorithm_version=model.get("version", ""))
            labels = np.zeros(study.image.array.shape, dtype=np.uint8)
            overlap = 0
            for n, r in enumerate(ok, start=1):
                overlap += int(np.count_nonzero(labels[r.mask > 0]))
                labels[r.mask > 0] = n
            if overlap:
                study.warnings.append(f"{overlap} voxel(s) belong to two lesions; the .seg.nrrd/.nii.gz labelmaps give "
                                      "them to the later lesion (the DICOM SEG keeps both).")
            write_segmentation(labels, tmp / NRRD_FILE, study.image, [(n, r.lesion.name) for n, r in enumerate(ok, 1)])
            write_mask(labels, tmp / NIFTI_FILE, reference=study.image)
            written += [SEG_FILE, NRRD_FILE, NIFTI_FILE]
            if options.write_sr:
                sr_rows = [dict(row, finding=r.lesion.finding, finding_site=r.lesion.finding_site)
                           for row, r in zip([x for x in rows if x["status"] == "ok"], ok)]
                write_volume_report(sr_rows, seg, study.series, tmp / SR_FILE, device_name=model.get("model", "medsamkit"))
                written.append(SR_FILE)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        (tmp / CSV_FILE).write_text(buf.getvalue(), encoding="utf-8")
        summary = {"study": study.name, "folder": str(study.folder), "sr": str(study.sr_path),
                   "series_uid": study.series.uid, "series": study.series.description, "model": model,
                   "options": {"margin_mm": options.margin_mm, "refine": options.refine, "window": options.window,
                               "single_slice": options.single_slice},
                   "files": written + [CSV_FILE, JSON_FILE], "warnings": study.warnings, "lesions": rows}
        (tmp / JSON_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():  # temporary files are created private; the results get the usual permissions
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if out_dir.exists():  # a finished study being redone (--force): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows
