"""A RECIST study's outputs: the per-lesion table, the prompt record, and the study folder written atomically
(see :mod:`medsamkit.recist`)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from .study import RecistOptions, Study

#: Files of one finished study (``lesions.json`` is written last by the rename, see write_study).
SEG_FILE, NRRD_FILE, NIFTI_FILE, CSV_FILE, JSON_FILE, SR_FILE = (
    "lesions.seg.dcm", "lesions.seg.nrrd", "lesions.nii.gz", "lesions.csv", "lesions.json", "volumes.sr.dcm")
#: The prompt record of the lesions, beside the .seg.nrrd (records.sidecar_path of NRRD_FILE).
PROMPTS_FILE = NRRD_FILE + ".prompts.json"
#: Every file a finished study may hold (which ones depends on the inputs and options; see write_study).
OUTPUTS = (SEG_FILE, NRRD_FILE, PROMPTS_FILE, NIFTI_FILE, SR_FILE, CSV_FILE, JSON_FILE)

TABLE_COLUMNS = ("study", "lesion", "status", "message", "segment_number", "tracking_uid", "finding", "finding_site",
                 "lines", "measured_slices", "first_slice", "last_slice", "slices_covered", "volume_ml",
                 "reader_long_mm", "mask_long_mm", "axis", "model", "weights", "adapter", "engine", "seconds")


def mask_long_diameter_mm(mask: np.ndarray, geometry, axis: int) -> float:
    """Longest in-plane diameter (maximum Feret diameter between pixel centres, mm) over the slices along numpy ``axis``."""
    from ..simulated_reader import axis_lines_2d
    from ..volume import extract_slice

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
    from ..records.record import (append_entry, geometry_of, make_entry, markers_block, plan_block, prompt_block,
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
    from ..io import partial_dir

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
        written = _write_masks(tmp, study, ok, rows, record, model, options) if ok else []
        _write_tables(tmp, study, rows, model, options, written)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows


def _write_masks(tmp: Path, study: Study, ok: list, rows: list, record: "dict | None", model: dict,
                 options: RecistOptions) -> list[str]:
    """The successful lesions ``ok`` into ``tmp``: the DICOM SEG (a DICOM series only), the labelmaps (.seg.nrrd
    with the prompt record, .nii.gz) and the volumes SR when asked for -> the names of the files written.
    Voxels of two lesions and an SR that cannot be written become warnings of the study."""
    from ..io import write_mask
    from ..records.record import TAG, record_tags, write_sidecar
    from ..segmentation_file import write_segmentation

    written = []
    seg = None
    if study.series is not None:
        from ..dicom.seg import SegmentSpec, write_seg

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
        from ..dicom.sr_write import write_volume_report

        sr_rows = [dict(row, finding=r.lesion.finding, finding_site=r.lesion.finding_site)
                   for row, r in zip([x for x in rows if x["status"] == "ok"], ok)]
        write_volume_report(sr_rows, seg, study.series, tmp / SR_FILE, device_name=model.get("model", "medsamkit"))
        written.append(SR_FILE)
    elif options.write_sr:
        study.warnings.append("--volume-sr needs a DICOM series (the SR refers to its SEG); not written for "
                              f"{study.folder}.")
    return written


def _write_tables(tmp: Path, study: Study, rows: list, model: dict, options: RecistOptions, written: list) -> None:
    """The per-lesion table into ``tmp``: CSV, and the JSON that also lists the study's files and warnings (the
    file whose presence marks a finished study, see study_done)."""
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


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """The finished temporary folder ``tmp`` becomes ``out_dir`` (replacing a finished study being redone),
    with the permissions the umask gives new files."""
    from ..io import partial_dir

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
