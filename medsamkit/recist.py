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

Lines without an SR (:func:`load_lines_study`): a volume (NIfTI/NRRD/MHA file or a DICOM series
folder) and a lines file - a plain CSV of end points (:func:`read_lines_csv`: ``lesion,x1,y1,z1,
x2,y2,z2`` and the coordinate system, LPS or RAS, in a ``space`` column or given by the caller) or
Slicer line markups (``.mrk.json``; lines named ``"lesion: ..."`` are grouped per lesion). Every
problem of such a file (a missing column, a non-number, a one-point line, a line off the volume or
across slices) is refused before any model work, naming the file, the row and the lesion. The
DICOM SEG is written only when the volume is a DICOM series.

Prompt records (:mod:`medsamkit.records.record`): every segmented lesion is one entry of kind
``"recist"`` (its box plan, its lines in LPS, the window, the model, seconds, its segment), stored
in the ``.seg.nrrd`` segment tags and in ``lesions.seg.nrrd.prompts.json``, so ``medsamkit replay
OUT/lesions.seg.nrrd --volume V`` re-runs them (voxel-identical with the same model).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
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
#: The prompt record of the lesions, beside the .seg.nrrd (records.sidecar_path of NRRD_FILE).
PROMPTS_FILE = NRRD_FILE + ".prompts.json"
#: Every file a finished study may hold (which ones depends on the inputs and options; see write_study).
OUTPUTS = (SEG_FILE, NRRD_FILE, PROMPTS_FILE, NIFTI_FILE, SR_FILE, CSV_FILE, JSON_FILE)
#: Columns of a lines CSV (read_lines_csv): required, and the optional ones.
CSV_REQUIRED = ("lesion", "x1", "y1", "z1", "x2", "y2", "z2")
CSV_OPTIONAL = ("space", "name")
SPACES = ("LPS", "RAS")
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
    dropped: list = field(default_factory=list)   # notes on lines left out (degenerate)
    dropped_mm: list = field(default_factory=list)  # the lengths the reader recorded for those lines


@dataclass
class LineLesion:
    """A lesion of a lines file (CSV or markups): what :class:`medsamkit.dicom.sr.SRLesion` says of an SR lesion.

    markers: its lines (RAS mm); where: per line, where it is in the file ("row 4" / "line 'T1: long'").
    """

    name: str
    markers: list = field(default_factory=list)
    where: list = field(default_factory=list)
    tracking_uid: str = ""
    finding: tuple | None = None
    finding_site: tuple | None = None

    @property
    def lines(self) -> list:
        return self.markers


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
        from .geometry import VolumeGeometry

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
        item = plan_lesion(lesion, series, sr, options)
        if item.plan is not None:  # lines left out: said in the summary as well as on the lesion's row
            study.warnings += item.dropped
        study.lesions.append(item)
    return study


def plan_lesion(lesion, series, sr_path, options: RecistOptions, geometry=None) -> LesionPlan:
    """Markers and box plan of one lesion; a user error is kept in ``error`` (naming file and lesion).

    lesion: an SR lesion (its lines are placed on ``series``) or a :class:`LineLesion` (markers given;
    ``geometry`` is the volume's when there is no series)."""
    from .markers import boxes_from_markers

    item = LesionPlan(lesion)
    try:
        notes: list = []
        if isinstance(lesion, LineLesion):
            item.markers = list(lesion.markers)
        else:
            from .dicom.sr import lesion_markers

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
_CSV_HELP = ("A lines CSV has a header row 'lesion,x1,y1,z1,x2,y2,z2,space' and one row per line: the lesion it "
             "belongs to, its two end points in mm, and LPS or RAS (the DICOM/ITK patient frame is LPS, Slicer's "
             "display RAS)")


def read_lines_csv(path: "str | os.PathLike", space: str | None = None) -> list[LineLesion]:
    """A CSV of line end points -> [LineLesion] in order of first appearance (markers in RAS mm).

    Columns (header row, any order, case-insensitive; ``,``, ``;`` or tab separated): ``lesion``,
    ``x1,y1,z1,x2,y2,z2`` (mm), and ``space`` (LPS or RAS per row) unless ``space`` is given; an
    optional ``name`` names the line; other columns are ignored. Rows of one ``lesion`` value are one
    lesion. Blank lines and lines starting with ``#`` are skipped. Raises InputError naming the file
    and every bad row (with its lesion): no statement of the coordinate system, missing columns, an
    empty file, a non-number, a one-point line (second point empty or equal to the first).
    """
    import csv as csv_mod

    path = Path(path)
    if space is not None and str(space).upper() not in SPACES:
        raise InputError(f"--space must be LPS or RAS; got '{space}'.")
    space = None if space is None else str(space).upper()
    if not path.is_file():
        raise InputError(f"Lines file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read this CSV file ({exc}). Save it as UTF-8 text. {_CSV_HELP}.") from exc
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise InputError(f"{path} is empty: there is no line to segment. {_CSV_HELP}.")
    head_no, head = numbered[0]
    delimiter = max((",", ";", "\t"), key=head.count)
    rows = list(csv_mod.reader([line for _, line in numbered], delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}, row {head_no} (header): missing column(s) {', '.join(missing)} (found: "
                         f"{', '.join(h for h in header if h) or 'nothing'}). {_CSV_HELP}.")
    dup = sorted({h for h in header if h and header.count(h) > 1})
    if dup:
        raise InputError(f"{path}, row {head_no} (header): column(s) {', '.join(dup)} appear twice; keep one of each.")
    if "space" not in header and space is None:
        raise InputError(f"{path} does not say which coordinate system its points are in: add a column 'space' with "
                         "LPS or RAS on every row (LPS: DICOM/ITK patient coordinates, RAS: Slicer's), or give "
                         "--space LPS|RAS.")
    if len(rows) == 1:
        raise InputError(f"{path} has a header but no line (no data row). {_CSV_HELP}.")
    col = {h: header.index(h) for h in CSV_REQUIRED + CSV_OPTIONAL if h in header}
    lesions: dict[str, LineLesion] = {}
    problems: list[str] = []
    flip = np.array([-1.0, -1.0, 1.0])
    for (row_no, _), values in zip(numbered[1:], rows[1:]):
        def get(name):
            i = col.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        lesion = get("lesion")
        where = f"row {row_no}" + (f" (lesion '{lesion}')" if lesion else "")
        if not lesion:
            problems.append(f"{where}: no lesion name; every line needs the lesion it belongs to in column 'lesion'")
            continue
        row_space = get("space").upper() or space
        if row_space is None:
            problems.append(f"{where}: no coordinate system in column 'space'; write LPS or RAS (or give --space)")
            continue
        if row_space not in SPACES:
            problems.append(f"{where}: space '{get('space')}' is neither LPS nor RAS")
            continue
        if space is not None and get("space") and row_space != space:
            problems.append(f"{where}: space {row_space} contradicts --space {space}; fix the file or the option")
            continue
        second = [get(c) for c in ("x2", "y2", "z2")]
        if not any(second) and all(get(c) for c in ("x1", "y1", "z1")):
            problems.append(f"{where}: the line has one point (x2, y2, z2 are empty); a line needs its two end points")
            continue
        coords, bad = [], []
        for c in ("x1", "y1", "z1", "x2", "y2", "z2"):
            v = get(c)
            try:
                f = float(v)
            except ValueError:
                bad.append(f"{c} = '{v}' is not a number" if v else f"{c} is empty")
                continue
            if not np.isfinite(f):
                bad.append(f"{c} = '{v}' is not a finite number")
            coords.append(f)
        if bad:
            problems.append(f"{where}: {'; '.join(bad)}")
            continue
        p1, p2 = np.array(coords[:3]), np.array(coords[3:])
        if np.linalg.norm(p2 - p1) < 1e-6:
            problems.append(f"{where}: both end points are the same point; a line needs two different end points")
            continue
        if row_space == "LPS":
            p1, p2 = p1 * flip, p2 * flip
        from .markers import Marker

        les = lesions.setdefault(lesion, LineLesion(lesion))
        les.markers.append(Marker(p1, p2, f"{lesion}: {get('name') or f'row {row_no}'}"))
        les.where.append(f"row {row_no}")
    if problems:
        more = f" (and {len(problems) - 12} more)" if len(problems) > 12 else ""
        raise InputError(f"{path}: {len(problems)} bad row(s), nothing was segmented: " + "; ".join(problems[:12])
                         + more + ".")
    return list(lesions.values())


def read_lines_markups(path: "str | os.PathLike") -> list[LineLesion]:
    """Slicer line markups (``.mrk.json``) or a plain JSON list of lines -> [LineLesion].

    Lines named ``"<lesion>: <anything>"`` (as the Slicer effect names the lines it loads from an SR)
    are grouped by ``<lesion>``; lines without such a name form one lesion named after the file.
    """
    from .markers import read_markers

    path = Path(path)
    default = path.name.split(".")[0] or "lesion"
    lesions: dict[str, LineLesion] = {}
    for m in read_markers(path):
        name = m.name.split(": ", 1)[0].strip() if ": " in m.name else default
        les = lesions.setdefault(name or default, LineLesion(name or default))
        les.markers.append(m)
        les.where.append(f"line '{m.name}'")
    return list(lesions.values())


def read_lines(path: "str | os.PathLike", space: str | None = None) -> list[LineLesion]:
    """A lines file by its name: ``.csv`` (:func:`read_lines_csv`), ``.mrk.json``/``.json``
    (:func:`read_lines_markups`)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".csv"):
        return read_lines_csv(path, space)
    if name.endswith(".json"):
        if space is not None:
            raise InputError(f"--space is for CSV files; {path.name} states its coordinate system itself "
                             "(Slicer markups: 'coordinateSystem'; a plain JSON list: RAS).")
        return read_lines_markups(path)
    raise InputError(f"--lines takes a .csv of end points or Slicer line markups (.mrk.json); got '{path.name}'.")


def volume_name(path: "str | os.PathLike") -> str:
    """The output folder name of a volume: its file name without the image suffix, or the folder's name."""
    from .io import suffix_of

    path = Path(path)
    if path.is_dir():
        return path.resolve().name or "volume"
    suffix = suffix_of(path)
    name = path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem
    return name or "volume"


def _read_volume(path: Path, options: RecistOptions):
    """(ImageData, DicomSeries or None) of a volume file or a DICOM series folder."""
    if path.is_dir():
        from .dicom.series import index_folder

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
    from .io import read_image

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
            from .dicom import require_dicom

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
    """The engine call of ``medsamkit markers`` (cli_volume.cmd_markers): a BoxPlan -> VolumeSegmentation on
    the volume already set on ``backend``. Kept as one function so a change of the backend API has one place."""
    return backend.segment_plan(plan, refine=refine, progress=progress, cancel=cancel)


def segment_study(backend, study: Study, options: RecistOptions | None = None, progress: ProgressFn = None,
                  cancel: CancelFn = None) -> list:
    """Segment every lesion of ``study`` -> [LesionResult] in SR order. Only Cancelled propagates."""
    options = options or RecistOptions()
    if options.single_slice not in SINGLE_SLICE_MODES:
        raise InputError(f"single_slice must be one of {', '.join(SINGLE_SLICE_MODES)}; got {options.single_slice}.")
    from .records.record import model_block

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
            from .progress import Cancelled

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
def mask_long_diameter_mm(mask: np.ndarray, geometry, axis: int) -> float:
    """Longest in-plane diameter (maximum Feret diameter between pixel centres, mm) over the slices along numpy ``axis``."""
    from .simulated_reader import axis_lines_2d
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
    geometry = study.geometry
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    rows, number = [], 0
    for res in results:
        les = res.lesion
        line_lengths = [v for item in study.lesions if item.lesion is les
                        for v in [m.length_mm for m in item.markers] + item.dropped_mm]
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


def lesion_record(study: Study, results: list, options: RecistOptions | None = None) -> "dict | None":
    """The prompt record (:mod:`medsamkit.records.record`) of the successful lesions: one ``"recist"`` entry per lesion,
    segment ``Segment_<n>`` = the n-th successful lesion (as in the .seg.nrrd). None when no result carries what
    a record needs (results not made by :func:`segment_study`)."""
    from .records.record import (append_entry, geometry_of, make_entry, markers_block, plan_block, prompt_block,
                          result_block, window_block)

    options = options or RecistOptions()
    ok = [r for r in results if r.ok]
    if not ok or any(r.plan is None or r.normalization is None or not r.model for r in ok):
        return None
    geom = geometry_of(study.image)
    source = "sr" if study.report is not None else ("csv" if study.source.name.lower().endswith(".csv") else "markups")
    record = None
    for n, r in enumerate(ok, start=1):
        prompt = prompt_block(geom)
        prompt["plan"] = plan_block(r.plan)
        prompt["markers"] = markers_block(r.markers) or None
        prompt["options"] = {"refine": bool(options.refine), "margin_mm": float(options.margin_mm),
                             "single_slice": "propagate" if r.propagated else options.single_slice,
                             "source": source, "lesion": r.lesion.name,
                             "tracking_uid": r.lesion.tracking_uid or None}
        prompt["options"] = {k: v for k, v in prompt["options"].items() if v is not None}
        entry = make_entry("recist", geom, prompt, window_block(r.normalization, options.window), r.model,
                           result_block(r.mask, scores=r.scores or None, slices=r.slices or None, snapshot=r.mask),
                           segment_id=f"Segment_{n}", segment_name=r.lesion.name, plane_axis=r.plan.axis,
                           plane_index=r.plan.marked[0] if r.propagated else None, model_seconds=r.seconds)
        record = append_entry(record, entry)
    return record


def write_study(out_dir: "str | os.PathLike", study: Study, results: list, model: dict,
                options: RecistOptions | None = None) -> dict:
    """Write SEG, .seg.nrrd (+ its prompt record), .nii.gz, CSV, JSON (and the volumes SR) into ``out_dir``
    atomically -> the rows.

    Everything is written into a temporary folder beside ``out_dir`` that replaces ``out_dir`` only when
    all files are written. With no successful lesion only the table files are written (naming each
    lesion's error). The DICOM files (SEG, volumes SR) only when the image is a DICOM series. The prompt
    record (:func:`lesion_record`) goes into the .seg.nrrd's segment tags and ``lesions.seg.nrrd.prompts.json``.
    Raises InputError when ``out_dir`` exists and is not a finished study of ours.
    """
    from .io import partial_dir, write_mask
    from .records.record import TAG, record_tags, write_sidecar
    from .segmentation_file import write_segmentation

    options = options or RecistOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not study_done(out_dir):
        raise InputError(f"{out_dir} exists but is not a finished medsamkit recist output; remove it or choose "
                         "another --out folder.")
    rows = lesion_rows(study, results, model)
    ok = [r for r in results if r.ok]
    record = lesion_record(study, results, options)
    tmp = partial_dir(out_dir)
    try:
        written = []
        if ok:
            seg = None
            if study.series is not None:
                from .dicom.seg import SegmentSpec, write_seg

                specs = [SegmentSpec(r.mask, r.lesion.name, r.lesion.tracking_uid, r.lesion.finding,
                                     r.lesion.finding_site) for r in ok]
                seg = write_seg(specs, study.series, tmp / SEG_FILE, algorithm_name=model.get("model", "medsamkit"),
                                algorithm_version=model.get("version", ""))
                written.append(SEG_FILE)
            labels = np.zeros(study.image.array.shape, dtype=np.uint8)
            overlap = 0
            for n, r in enumerate(ok, start=1):
                overlap += int(np.count_nonzero(labels[r.mask > 0]))
                labels[r.mask > 0] = n
            if overlap:
                study.warnings.append(f"{overlap} voxel(s) belong to two lesions; the .seg.nrrd/.nii.gz labelmaps give "
                                      "them to the later lesion" + (" (the DICOM SEG keeps both)." if seg else "."))
            tags = None
            if record is not None:
                by_segment = record_tags(record)
                tags = {n: {TAG: by_segment[f"Segment_{n}"]} for n in range(1, len(ok) + 1)}
            write_segmentation(labels, tmp / NRRD_FILE, study.image, [(n, r.lesion.name) for n, r in enumerate(ok, 1)],
                               tags=tags)
            written.append(NRRD_FILE)
            if record is not None:
                write_sidecar(tmp / NRRD_FILE, record)
                written.append(PROMPTS_FILE)
            write_mask(labels, tmp / NIFTI_FILE, reference=study.image)
            written.append(NIFTI_FILE)
            if options.write_sr and seg is not None:
                from .dicom.sr_write import write_volume_report

                sr_rows = [dict(row, finding=r.lesion.finding, finding_site=r.lesion.finding_site)
                           for row, r in zip([x for x in rows if x["status"] == "ok"], ok)]
                write_volume_report(sr_rows, seg, study.series, tmp / SR_FILE, device_name=model.get("model", "medsamkit"))
                written.append(SR_FILE)
            elif options.write_sr:
                study.warnings.append("--volume-sr needs a DICOM series (the SR refers to its SEG); not written for "
                                      f"{study.folder}.")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        (tmp / CSV_FILE).write_text(buf.getvalue(), encoding="utf-8")
        summary = {"study": study.name, "folder": str(study.folder),
                   "sr": None if study.report is None else str(study.source),
                   "lines": None if study.report is not None else str(study.source),
                   "series_uid": None if study.series is None else study.series.uid,
                   "series": None if study.series is None else study.series.description, "model": model,
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
            old = partial_dir(out_dir, ".old")
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows
