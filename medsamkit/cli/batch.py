"""Headless batch: volume + lesion-axis markers (or boxes) -> ``.seg.nrrd``, one case or a list of cases.

Runs the same way inside Slicer and in plain Python with slicer-core installed::

    Slicer --no-main-window --python-script medsamkit/cli/batch.py -- --volume CT.nrrd --markers L.mrk.json --out L.seg.nrrd
    python medsamkit/cli/batch.py --volume CT.nrrd --markers L.mrk.json --out L.seg.nrrd
    python -m medsamkit.cli.batch --cases cases.csv   # columns: volume, markers, boxes, out, reference, window
    Slicer --no-main-window --python-script medsamkit/cli/batch.py -- recist STUDY_DIR --out OUT_DIR  # DICOM SR -> SEG

Files are read and written with Slicer's own logic: volumes by ``vtkSlicerVolumesLogic``, markers by
``vtkSlicerMarkupsLogic`` (a plain JSON list of lines is read by :mod:`medsamkit.markers`), the result
by ``vtkMRMLSegmentationStorageNode`` (written to a temporary file renamed into place, so a failed case
leaves no partial output). ``--boxes`` is a JSON file ``{"axis": "axial" | 0..2, "boxes": {"K": [x0, y0,
x1, y1], ...}}`` in slice pixels (see :mod:`medsamkit.volume`); with markers too, its boxes replace
theirs on the slices it names.

The model is reached through :func:`medsamkit.backend.open_backend` with the same options and defaults
as the command line (``--engine auto``, ``--adapter``, ``--backend URL``). One MRML context serves all
cases (each ``vtkSlicerSegmentationsModuleLogic.SetMRMLScene`` appends converter rules to a process-wide
factory, so a context per case would grow it); the nodes a case adds are removed after it.

A failed case prints what failed and what to do (and the traceback for an error that is not ours); the
other cases still run, and the exit status is 1 when any case failed (2 for bad command-line usage).
Run as a script (also ``Slicer --python-script``, which does not exit by itself) every way out ends
the process through ``sys.exit`` with that status: an unexpected exception prints its traceback and
exits 1, so a window-less Slicer never stays behind.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import traceback
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
    from medsamkit.markers import DEFAULT_MARGIN_MM

    p.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                   help=f"margin around each marked slice's box in mm (default {DEFAULT_MARGIN_MM:g}, as in "
                        "'medsamkit markers' and the Slicer effect)")
    p.add_argument("--refine", action="store_true", help="re-prompt slices that disagree with their neighbours")
    p.add_argument("--window", default="auto", help="soft-tissue, lung, brain, bone, W,L, percentile, none, auto")
    p.add_argument("--segment-name", default="MedSAM", help="name of the segment written")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from medsamkit.cli.options import add_backend_options, add_model_options

    add_model_options(p)
    add_backend_options(p)
    from medsamkit.cluster.options import add_cluster_options

    add_cluster_options(p)
    p.add_argument("--force", action="store_true", help="with --cluster: redo cases whose output is already there")
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


def run_case(backend, ctx, case: Case, args, progress=None) -> CaseReport:
    """Segment one case into ``case.out`` in ``ctx`` (the nodes it adds are removed at the end).

    Never raises for a case's own failure (reports it; an error that is not a MedSAMError comes with
    its traceback)."""
    from medsamkit.io import atomic_output
    from medsamkit.metrics import dice as dice_of
    from medsamkit.volume import numpy_axis

    from medsamkit.mrml.interactive import NormalizationCache
    from medsamkit.mrml.segments import new_segmentation, segment_array, set_segment_from_array
    from medsamkit.mrml.volumes import array_from_volume, load_volume, volume_geometry

    t0 = time.perf_counter()
    before = _node_ids(ctx)
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
        backend.set_volume(volume, normalization=norm)  # the plan names numpy axes: no plane names to resolve
        t_model = time.perf_counter()
        result = backend.segment_plan(plan, refine=args.refine, progress=progress)
        t_model = time.perf_counter() - t_model
        seg_node, segment_id = new_segmentation(ctx, volume_node, Path(case.out).name.split(".")[0], args.segment_name)
        set_segment_from_array(seg_node, segment_id, result.mask, volume_node)
        from medsamkit.mrml.records import record_batch_result  # the prompt record (segment tag)

        record = record_batch_result(seg_node, segment_id, volume_node, plan, result, norm, backend, t_model,
                                     refine=args.refine, backend_spec=args.backend)
        save_segmentation(ctx, seg_node, case.out, atomic_output)
        from medsamkit.records.record import write_sidecar

        write_sidecar(case.out, record)  # <out>.prompts.json
        dice = None
        if case.reference:
            ref = array_from_volume(load_volume(ctx, case.reference, "reference", labelmap=True)) > 0
            written = segment_array(ctx, seg_node, segment_id, volume_node) > 0
            dice = dice_of(written, ref)
        msg = (f"{case.out}: {len(result.slices)} slices, {int(result.mask.sum())} voxels, "
               f"window {norm.label}" + (f", Dice {dice:.3f}" if dice is not None else ""))
        for w in result.warnings:
            msg += f"\n  warning: {w}"
        return CaseReport(case, True, msg, time.perf_counter() - t0, dice)
    except MedSAMError as exc:
        return CaseReport(case, False, str(exc), time.perf_counter() - t0)
    except Exception as exc:  # a bug must not cost the other cases their results; its traceback is shown
        return CaseReport(case, False, f"unexpected {type(exc).__name__}: {exc} (a medsamkit bug; please report it "
                          f"with this message)\n{traceback.format_exc().rstrip()}", time.perf_counter() - t0)
    finally:
        _remove_nodes_since(ctx, before)


def _node_ids(ctx) -> set:
    nodes = ctx.scene.GetNodes()
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def _remove_nodes_since(ctx, before: set) -> None:
    """Remove the nodes added after ``before`` was taken (the context itself stays for the next case)."""
    for node_id in sorted(_node_ids(ctx) - before, reverse=True):
        node = ctx.scene.GetNodeByID(node_id)
        if node is not None:
            ctx.scene.RemoveNode(node)


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
    """Run the batch; returns the exit status (0 all written, 1 a case failed, 2 bad usage or setup)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:  # Slicer --python-script passes "--" through; what follows is ours
        argv = argv[argv.index("--") + 1:]
    if argv[:1] == ["recist"]:  # RECIST studies (DICOM SR -> DICOM SEG): the CLI command, run headless here
        from medsamkit.cli.commands import main as cli_main

        return cli_main(argv)
    args = build_parser().parse_args(argv)
    from medsamkit.backend import describe
    from medsamkit.cli.options import backend_from_options
    from medsamkit.progress import tqdm_progress

    from medsamkit.mrml.context import make_context, quiet_vtk

    quiet_vtk()
    try:
        if args.cases:
            cases = read_cases(args.cases)
        else:
            if not args.out:
                raise InputError("--out S.seg.nrrd is required with --volume.")
            cases = [Case(args.volume, args.out, args.markers, args.boxes, args.reference, name=Path(args.volume).name)]
        if args.cluster:
            from medsamkit.cli import batch as by_name  # this module by its name, also when run as a script:
            from medsamkit.cluster.batch import run_batch_cluster  # Ray then sends run_case by reference

            return run_batch_cluster(args, cases, by_name.run_case)
        backend = backend_from_options(args)
    except MedSAMError as exc:
        print(f"medsam-batch: error: {exc}", file=sys.stderr)
        return 2
    with backend:
        ctx = make_context()  # once: see the module docstring
        print(f"medsam-batch: {len(cases)} case(s), {describe(backend)}", flush=True)
        bar = None if args.quiet else tqdm_progress("cases")
        reports = []
        t0 = time.perf_counter()
        try:
            for n, case in enumerate(cases):
                if bar is not None:
                    bar(n, len(cases), case.name)
                report = run_case(backend, ctx, case, args)
                reports.append(report)
                status = "ok" if report.ok else "FAILED"
                stream = sys.stdout if report.ok else sys.stderr
                print(f"[{n + 1}/{len(cases)}] {case.name} {status} ({report.seconds:.1f} s): {report.message}",
                      file=stream, flush=True)
        finally:
            ctx.scene.Clear(1)
        if bar is not None:
            bar(len(cases), len(cases), "done")
    failed = [r for r in reports if not r.ok]
    print(f"medsam-batch: {len(reports) - len(failed)} of {len(reports)} case(s) written in "
          f"{time.perf_counter() - t0:.1f} s" + (f"; {len(failed)} failed" if failed else ""), flush=True)
    return 1 if failed else 0


def run_script(argv=None) -> int:
    """:func:`main` for a script run: every way out is an exit status, an unexpected error with its traceback.

    ``Slicer --python-script`` keeps Slicer running after the script unless the script calls sys.exit,
    so nothing may escape this function but the status that the caller passes to sys.exit.
    """
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print("medsam-batch: interrupted", file=sys.stderr, flush=True)
        return 130
    except BaseException:  # noqa: BLE001 - the point: nothing may keep a headless Slicer alive
        traceback.print_exc()
        print("medsam-batch: failed with an unexpected error (traceback above; a medsamkit bug, please report it)",
              file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(run_script())  # inside Slicer, sys.exit ends the application with this status
