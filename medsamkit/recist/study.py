"""One RECIST study: read and check everything before any model work, then segment each lesion (see
:mod:`medsamkit.recist`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, MedSAMError
from ..markers import DEFAULT_MARGIN_MM
from ..progress import CancelFn, ProgressFn, check_cancel, report
from .lines import LineLesion, read_lines

SINGLE_SLICE_MODES = ("propagate", "slice")


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
    dropped: list = field(default_factory=list)   # notes on lines left out (degenerate)
    dropped_mm: list = field(default_factory=list)  # the lengths the reader recorded for those lines


@dataclass
class Study:
    """One study: the image and the measured lesions. ``source`` is the SR (``report`` read from it) or the
    lines file (``report`` None); ``series`` is the DICOM series of the image, None for a NIfTI/NRRD volume."""

    name: str
    folder: Path
    source: Path
    report: object                      # MeasurementReport, or None for a lines file
    series: object                      # DicomSeries, or None
    image: object                       # ImageData
    lesions: list = field(default_factory=list)   # LesionPlan
    warnings: list = field(default_factory=list)

    @property
    def sr_path(self) -> "Path | None":
        return self.source if self.report is not None else None

    @property
    def geometry(self):
        from ..geometry import VolumeGeometry

        return self.series.geometry if self.series is not None else VolumeGeometry.from_image(self.image)


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
    # what the prompt record needs (set by segment_study; absent from results made elsewhere)
    plan: object = None                 # the BoxPlan run
    markers: list = field(default_factory=list)
    propagated: bool = False            # one measured slice, propagated from it
    normalization: object = None        # the resolved window
    model: dict | None = None           # records.model_block of the backend
    scores: dict = field(default_factory=dict)
    slices: list = field(default_factory=list)


def _one_sr(index) -> Path:
    from ..dicom.sr import read_report

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
    from ..dicom.series import index_folder
    from ..dicom.sr import check_has_lines, read_report, select_series

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
        item = plan_lesion(lesion, series, sr, options)
        if item.plan is not None:  # lines left out: said in the summary as well as on the lesion's row
            study.warnings += item.dropped
        study.lesions.append(item)
    return study


def plan_lesion(lesion, series, sr_path, options: RecistOptions, geometry=None) -> LesionPlan:
    """Markers and box plan of one lesion; a user error is kept in ``error`` (naming file and lesion).

    lesion: an SR lesion (its lines are placed on ``series``) or a :class:`LineLesion` (markers given;
    ``geometry`` is the volume's when there is no series)."""
    from ..markers import boxes_from_markers

    item = LesionPlan(lesion)
    try:
        notes: list = []
        if isinstance(lesion, LineLesion):
            item.markers = list(lesion.markers)
        else:
            from ..dicom.sr import lesion_markers

            item.markers = lesion_markers(lesion, series, sr_path, notes, item.dropped_mm)
        item.plan = boxes_from_markers(item.markers, geometry or series.geometry, margin_mm=options.margin_mm)
        item.plan.warnings[:0] = notes
        item.dropped = list(notes)
    except InputError as exc:
        msg = str(exc)
        where = f"{sr_path}, lesion '{lesion.name}'"
        item.error = msg if msg.startswith(str(sr_path)) else f"{where}: {msg}"
    return item


# ----------------------------------------------------------------------------------------------
# Lines without an SR: a plain CSV of end points, or Slicer line markups
# ----------------------------------------------------------------------------------------------


def volume_name(path: "str | os.PathLike") -> str:
    """The output folder name of a volume: its file name without the image suffix, or the folder's name."""
    from ..io import suffix_of

    path = Path(path)
    if path.is_dir():
        return path.resolve().name or "volume"
    suffix = suffix_of(path)
    name = path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem
    return name or "volume"


def _read_volume(path: Path, options: RecistOptions):
    """(ImageData, DicomSeries or None) of a volume file or a DICOM series folder."""
    if path.is_dir():
        from ..dicom.series import index_folder

        index = index_folder(path)
        if options.series_uid:
            if options.series_uid not in index.series:
                raise InputError(f"Series {options.series_uid} is not in {path} ({index.summary()}).")
            series = index.series[options.series_uid]
        elif len(index.series) == 1:
            series = next(iter(index.series.values()))
        elif not index.series:
            broken = f" ({len(index.corrupt)} damaged DICOM file(s), e.g. {next(iter(index.corrupt))})" \
                if index.corrupt else ""
            if index.rejected:
                broken = f": {next(iter(index.rejected.values()))[1]}"
            raise InputError(f"{path} holds no DICOM image series{broken}; give the folder of the measured series "
                             "or a NIfTI/NRRD volume with --volume.")
        else:
            raise InputError(f"{path} holds {len(index.series)} image series; choose the measured one with --series "
                             "UID: " + "; ".join(f"{s.description} {uid}" for uid, s in index.series.items()))
        return series.read(), series
    from ..io import read_image

    image = read_image(path)
    if not image.is_3d:
        raise InputError(f"{path} is a 2D image; RECIST lines need the 3D volume they were measured on.")
    return image, None


def load_lines_study(volume: "str | os.PathLike", lines: "str | os.PathLike", options: RecistOptions | None = None,
                     space: str | None = None, name: str | None = None) -> Study:
    """A study from a volume (file or DICOM series folder) and a lines file (:func:`read_lines`); no model work.

    Unlike an SR study, every problem is an InputError for the whole file (naming file, row and lesion),
    so nothing is written for a file with a typo: a line off the volume (with a hint when the other
    coordinate system would put it inside), a line across slices, and the format errors of read_lines.
    """
    options = options or RecistOptions()
    lines, volume = Path(lines), Path(volume)
    lesions = read_lines(lines, space)  # the cheap checks first
    if not volume.exists():
        raise InputError(f"Volume not found: {volume}")
    image, series = _read_volume(volume, options)
    study = Study(name or volume_name(volume), volume, lines, None, series, image)
    geometry = study.geometry
    flip = np.array([-1.0, -1.0, 1.0])
    csv_file = lines.name.lower().endswith(".csv")
    problems, n_off, n_flipped_inside = [], 0, 0
    for les in lesions:
        if series is not None:
            from ..dicom import require_dicom

            les.tracking_uid = str(require_dicom()[1].UID())  # the SEG's and the table's tracking UID
        off = []
        for m, where in zip(les.markers, les.where):
            inside = geometry.contains_ijk(geometry.ras_to_ijk_points([m.start_ras, m.end_ras])).all()
            if not inside:
                n_off += 1
                n_flipped_inside += bool(geometry.contains_ijk(
                    geometry.ras_to_ijk_points([m.start_ras * flip, m.end_ras * flip])).all())
                off.append(f"{where} (lesion '{les.name}'): the line lies (partly) outside the volume")
        if off:
            problems += off
            continue
        item = plan_lesion(les, series, lines, options, geometry=geometry)
        if item.error:
            problems.append(item.error.replace(f"{lines}, ", "", 1) + f" (lines at {', '.join(les.where)})")
        study.lesions.append(item)
    if problems:
        size = " x ".join(str(s) for s in geometry.shape[::-1])
        more = f" (and {len(problems) - 12} more)" if len(problems) > 12 else ""
        hint = ""
        if n_off and n_flipped_inside == n_off:
            which = "this line" if n_off == 1 else "these lines"
            hint = (f" With the other coordinate system (LPS and RAS swapped) {which}"
                    " would lie inside the volume: check the file's 'space' column" +
                    (" (or --space)." if csv_file else "."))
        elif n_off:
            hint = " Were the lines measured on another volume? Give the volume they were measured on."
        raise InputError(f"{lines}: {len(problems)} problem(s) with the lines on {volume} ({size} voxels), nothing "
                         "was segmented: " + "; ".join(problems[:12]) + more + "." + hint)
    return study


def segment_plan_with_backend(backend, plan, refine: bool = False, progress: ProgressFn = None,
                              cancel: CancelFn = None):
    """The engine call of ``medsamkit markers`` (cli/volume.cmd_markers): a BoxPlan -> VolumeSegmentation on
    the volume already set on ``backend``. Kept as one function so a change of the backend API has one place."""
    return backend.segment_plan(plan, refine=refine, progress=progress, cancel=cancel)


def segment_study(backend, study: Study, options: RecistOptions | None = None, progress: ProgressFn = None,
                  cancel: CancelFn = None) -> list:
    """Segment every lesion of ``study`` -> [LesionResult] in SR order. Only Cancelled propagates."""
    options = options or RecistOptions()
    if options.single_slice not in SINGLE_SLICE_MODES:
        raise InputError(f"single_slice must be one of {', '.join(SINGLE_SLICE_MODES)}; got {options.single_slice}.")
    from ..records.record import model_block

    image = study.image
    backend.set_volume(image.array, normalization=options.window, modality=image.modality, direction=image.direction)
    model = model_block(backend)  # for the prompt records
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
            from ..progress import Cancelled

            if isinstance(exc, Cancelled):
                raise
            result = LesionResult(item.lesion, False, f"{study.source}, lesion '{item.lesion.name}': {exc}",
                                  lines=len(item.markers))
        result.seconds = time.perf_counter() - t0
        result.model = model
        results.append(result)
    report(progress, len(study.lesions), len(study.lesions), f"{study.name}: done")
    return results


def _segment_lesion(backend, item: LesionPlan, options: RecistOptions, cancel) -> LesionResult:
    plan = item.plan
    warnings = list(plan.warnings)
    propagated = len(plan.marked) == 1 and options.single_slice == "propagate"
    if propagated:
        k = plan.marked[0]
        res = backend.propagate(k, plan.axis, box=[float(v) for v in plan.boxes[k]], cancel=cancel)
        warnings = [f"Measured on slice {k} only: segmented there from the lines' box and propagated to "
                    f"slices {res.slices[0]}..{res.slices[-1]}."] + warnings + list(res.warnings)
    else:
        res = segment_plan_with_backend(backend, plan, refine=options.refine, cancel=cancel)
        warnings += [w for w in res.warnings if w not in warnings]
    mask = np.asarray(res.mask, dtype=np.uint8)
    if not mask.any():
        return LesionResult(item.lesion, False, f"lesion '{item.lesion.name}': the model returned an empty mask on "
                            f"slices {plan.marked}; check the lines and the intensity window (--window).",
                            lines=len(item.markers), measured_slices=list(plan.marked), axis=plan.axis)
    return LesionResult(item.lesion, True, "; ".join(warnings), mask, plan.axis, len(item.markers),
                        list(plan.marked), warnings=warnings, plan=plan, markers=list(item.markers),
                        propagated=propagated,
                        normalization=getattr(res, "normalization", None) or getattr(backend, "normalization", None),
                        scores=dict(getattr(res, "scores", None) or {}),
                        slices=list(getattr(res, "slices", None) or []))


# ----------------------------------------------------------------------------------------------
# Measurements of a mask
# ----------------------------------------------------------------------------------------------
