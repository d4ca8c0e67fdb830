"""Headless batch: volume + lesion-axis markers (or boxes) -> ``.seg.nrrd``, one case or a list of cases.

Runs the same way inside Slicer and in plain Python with slicer-core installed::

    Slicer --no-main-window --python-script medsamkit/mrml/batch.py -- --volume CT.nrrd --markers L.mrk.json --out L.seg.nrrd
    python medsamkit/mrml/batch.py --volume CT.nrrd --markers L.mrk.json --out L.seg.nrrd
    python -m medsamkit.mrml.batch --cases cases.csv   # columns: volume, markers, boxes, out, reference, window

Files are read and written with Slicer's own logic: volumes by ``vtkSlicerVolumesLogic``, markers by
``vtkSlicerMarkupsLogic`` (a plain JSON list of lines is read by :mod:`medsamkit.markers`), the result
by ``vtkMRMLSegmentationStorageNode`` (written to a temporary file renamed into place, so a failed case
leaves no partial output). ``--boxes`` is a JSON file ``{"axis": "axial" | 0..2, "boxes": {"K": [x0, y0,
x1, y1], ...}}`` in slice pixels (see :mod:`medsamkit.volume`); with markers too, its boxes replace
theirs on the slices it names.

Every case runs in a fresh scene. A failed case prints one line saying what failed and what to do; the
other cases still run, and the exit status is 1 when any case failed (2 for bad command-line usage).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: import medsamkit absolutely
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]  # mrml/ must not shadow modules
    try:
        import medsamkit  # noqa: F401  (installed, or next to Slicer's scripted modules)
    except ImportError:
        sys.path.insert(0, str(_here.parents[1]))

import numpy as np

from medsamkit.errors import InputError, MedSAMError

CASE_KEYS = ("volume", "markers", "boxes", "out", "reference")  # file paths; "name" and "window" are text


@dataclass
class Case:
    volume: str
    out: str
    markers: str | None = None
    boxes: str | None = None
    reference: str | None = None
    name: str = ""
    window: str | None = None   # overrides --window for this case (e.g. lung for a lung CT)


@dataclass
class CaseReport:
    case: Case
    ok: bool
    message: str
    seconds: float
    dice: float | None = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsam-batch", description="Segment lesions from axis markers or boxes "
                                "into .seg.nrrd files (headless; Slicer's readers and writers).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--volume", help="volume file (NRRD, NIfTI, MHA)")
    src.add_argument("--cases", help="CSV or JSON list of cases (keys: volume, markers, boxes, out, reference, "
                     "window, name)")
    p.add_argument("--markers", help=".mrk.json with line markups (or a plain JSON list of lines)")
    p.add_argument("--boxes", help="JSON with per-slice boxes in slice pixels (see module docs)")
    p.add_argument("--out", help="output .seg.nrrd")
    p.add_argument("--reference", help="optional label volume: print the Dice of the result against it")
    p.add_argument("--axis", default=None, help="slice axis of the markers: axial, coronal, sagittal (default: "
                   "the axis the lines lie in)")
    p.add_argument("--margin-mm", type=float, default=None, help="margin around each marked slice's box (mm)")
    p.add_argument("--refine", action="store_true", help="re-prompt slices that disagree with their neighbours")
    p.add_argument("--window", default="auto", help="soft-tissue, lung, brain, bone, W,L, percentile, none, auto")
    p.add_argument("--segment-name", default="MedSAM", help="name of the segment written")
    p.add_argument("--model", default=None, help="model kind (default: LiteMedSAM)")
    p.add_argument("--checkpoint", default=None, help="weights file (default: the model's bundled weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from medsamkit.backend.cli_options import add_backend_options

    add_backend_options(p)
    return p


def read_cases(path: "str | Path") -> list[Case]:
    """Cases from a CSV (header row) or JSON list; relative paths are relative to the list file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Case list not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (ValueError, csv.Error) as exc:
        raise InputError(f"Cannot read the case list {path}: {exc}") from exc
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path} holds no cases; give a CSV with a header (volume,markers,out) or a JSON list.")
    cases = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("volume") or not row.get("out"):
            raise InputError(f"Case {n} of {path} needs at least 'volume' and 'out'.")
        fields = {k: (str(path.parent / row[k]) if row.get(k) else None) for k in CASE_KEYS}
        cases.append(Case(fields["volume"], fields["out"], fields["markers"], fields["boxes"], fields["reference"],
                          name=str(row.get("name") or f"case {n}"), window=row.get("window") or None))
    return cases


def read_boxes_file(path: "str | Path"):
    """``{"axis": ..., "boxes": {"K": [x0, y0, x1, y1]}}`` -> (numpy axis, {K: (4,) box})."""
    from medsamkit.volume import numpy_axis

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Boxes file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        axis = numpy_axis(data.get("axis", 0))
        boxes = {int(k): np.asarray(v, dtype=float).reshape(4) for k, v in data["boxes"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a boxes file: expected {{\"axis\": \"axial\", \"boxes\": {{\"12\": "
                         f"[x0, y0, x1, y1]}}}} ({exc}).") from exc
    if not boxes:
        raise InputError(f"{path} holds no boxes.")
    return axis, boxes


def make_plan(ctx, case: Case, geometry, axis, margin_mm):
    """BoxPlan from the case's markers and/or boxes file."""
    from medsamkit.markers import BoxPlan

    from medsamkit.mrml.markups import load_marker_file, plan_from_line_nodes

    if not case.markers and not case.boxes:
        raise InputError("Give --markers and/or --boxes for each case.")
    plan = None
    if case.markers:
        plan = plan_from_line_nodes(load_marker_file(ctx, case.markers), geometry, axis=axis, margin_mm=margin_mm)
    if case.boxes:
        box_axis, boxes = read_boxes_file(case.boxes)
        if plan is None:
            plan = BoxPlan(axis=box_axis, boxes={}, marked=[], warnings=[])
        elif plan.axis != box_axis:
            raise InputError(f"The boxes file uses axis {box_axis} but the markers lie on axis {plan.axis}.")
        plan.boxes.update(boxes)
        plan.boxes = dict(sorted(plan.boxes.items()))
        plan.marked = sorted(set(plan.marked) | set(boxes))
    return plan


def run_case(engine, case: Case, args, progress=None) -> CaseReport:
    """Segment one case into ``case.out``; never raises for a user error (reports it instead)."""
    from medsamkit.io import atomic_output
    from medsamkit.volume import numpy_axis

    from medsamkit.mrml.context import make_context
    from medsamkit.mrml.interactive import NormalizationCache
    from medsamkit.mrml.segments import new_segmentation, segment_array, set_segment_from_array
    from medsamkit.mrml.volumes import array_from_volume, load_volume, volume_geometry

    t0 = time.perf_counter()
    ctx = make_context()
    try:
        if not str(case.out).lower().endswith(".seg.nrrd"):
            raise InputError(f"The output must be a .seg.nrrd file (got {case.out}).")
        from medsamkit.io import check_outputs

        check_outputs([("The output", case.out)], [("the input volume", case.volume), ("the markers file", case.markers),
                                                   ("the boxes file", case.boxes), ("the reference", case.reference)])
        volume_node = load_volume(ctx, case.volume)
        geometry = volume_geometry(volume_node)
        axis = None if args.axis is None else numpy_axis(args.axis, geometry.direction)
        plan = make_plan(ctx, case, geometry, axis, args.margin_mm)
        volume = array_from_volume(volume_node)
        norm = NormalizationCache().resolve(volume_node, volume, case.window or args.window)
        result = engine.segment_plan(volume, plan, norm, refine=args.refine, progress=progress)
        seg_node, segment_id = new_segmentation(ctx, volume_node, Path(case.out).name.split(".")[0], args.segment_name)
        set_segment_from_array(seg_node, segment_id, result.mask, volume_node)
        save_segmentation(ctx, seg_node, case.out, atomic_output)
        dice = None
        if case.reference:
            ref = array_from_volume(load_volume(ctx, case.reference, "reference", labelmap=True)) > 0
            written = segment_array(ctx, seg_node, segment_id, volume_node) > 0
            dice = float(2 * (ref & written).sum() / max(ref.sum() + written.sum(), 1))
        msg = (f"{case.out}: {len(result.slices)} slices, {int(result.mask.sum())} voxels, "
               f"window {norm.label}" + (f", Dice {dice:.3f}" if dice is not None else ""))
        for w in result.warnings:
            msg += f"\n  warning: {w}"
        return CaseReport(case, True, msg, time.perf_counter() - t0, dice)
    except MedSAMError as exc:
        return CaseReport(case, False, str(exc), time.perf_counter() - t0)
    except Exception as exc:  # a bug must not cost the other cases their results
        return CaseReport(case, False, f"unexpected {type(exc).__name__}: {exc} (a medsamkit bug; please report it "
                          "with this message)", time.perf_counter() - t0)
    finally:
        ctx.scene.Clear(1)


def save_segmentation(ctx, segmentation_node, path, atomic_output) -> None:
    """Write ``.seg.nrrd`` with Slicer's segmentation storage node, atomically."""
    storage = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    try:
        with atomic_output(path) as tmp:
            storage.SetFileName(str(tmp))
            if storage.WriteData(segmentation_node) != 1:
                raise InputError(f"Slicer could not write {path}; check that the folder is writable.")
    finally:
        ctx.scene.RemoveNode(storage)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:  # Slicer --python-script passes "--" through; what follows is ours
        argv = argv[argv.index("--") + 1:]
    args = build_parser().parse_args(argv)
    from medsamkit.progress import tqdm_progress

    from medsamkit.mrml.context import quiet_vtk
    from medsamkit.mrml.engine import make_engine

    quiet_vtk()
    try:
        if args.cases:
            cases = read_cases(args.cases)
        else:
            if not args.out:
                raise InputError("--out S.seg.nrrd is required with --volume.")
            cases = [Case(args.volume, args.out, args.markers, args.boxes, args.reference, name=Path(args.volume).name)]
        engine = make_engine(args.model, args.checkpoint, args.device, args.backend,
                             token_file=args.server_token_file, timeout=args.server_timeout)
    except MedSAMError as exc:
        print(f"medsam-batch: error: {exc}", file=sys.stderr)
        return 2
    print(f"medsam-batch: {len(cases)} case(s), {engine.description}", flush=True)
    bar = None if args.quiet else tqdm_progress("cases")
    reports = []
    t0 = time.perf_counter()
    for n, case in enumerate(cases):
        if bar is not None:
            bar(n, len(cases), case.name)
        report = run_case(engine, case, args)
        reports.append(report)
        status = "ok" if report.ok else "FAILED"
        stream = sys.stdout if report.ok else sys.stderr
        print(f"[{n + 1}/{len(cases)}] {case.name} {status} ({report.seconds:.1f} s): {report.message}",
              file=stream, flush=True)
    if bar is not None:
        bar(len(cases), len(cases), "done")
    failed = [r for r in reports if not r.ok]
    print(f"medsam-batch: {len(reports) - len(failed)} of {len(reports)} case(s) written in "
          f"{time.perf_counter() - t0:.1f} s" + (f"; {len(failed)} failed" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())  # inside Slicer, sys.exit ends the application with this status
