"""3D sub-commands: ``markers`` (reader's axis lines -> 3D mask), ``propagate`` and ``bench``.

Thin, like cli.py: parse, call the engine (markers.py, volume_segmentation.py, bench.py), write
the result atomically at the very end (nothing is written when anything fails), print a summary.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from . import arg_types
from ..errors import InputError

SEG_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


def add_parser(subparsers) -> None:
    from .options import add_backend_options, add_model_options, add_unit_option
    from ..markers import DEFAULT_MARGIN_MM
    from ..volume_segmentation import DEFAULT_SCORE_THRESHOLD

    p = subparsers.add_parser("markers", help="segment a lesion in 3D from long/short axis lines drawn every few slices")
    p.add_argument("volume", help="NIfTI/NRRD/MHA volume or DICOM folder the lines were drawn on")
    p.add_argument("markers", nargs="+", help="Slicer .mrk.json file(s) with line markups, or a JSON list of lines (RAS)")
    p.add_argument("--out", required=True, help="output: .seg.nrrd (Slicer segmentation) or .nii.gz/.nrrd/.mha labelmap")
    p.add_argument("--refine", action="store_true", help="re-prompt slices that disagree with their neighbours")
    p.add_argument("--axis", default="auto", help="slice axis: auto (most perpendicular to the lines), axial, coronal, sagittal")
    add_unit_option(p, "--margin-mm", "--margin", type=arg_types.non_negative_float, default=DEFAULT_MARGIN_MM,
                    metavar="MM", help=f"box margin around each slice's lines in mm (default {DEFAULT_MARGIN_MM:g}, as "
                                       "in the batch and the Slicer effect; --margin is the deprecated spelling)")
    p.add_argument("--window", default="auto", metavar="PRESET", help="intensity: soft-tissue, lung, brain, bone, W,L, percentile, auto")
    p.add_argument("--name", default="lesion", help="segment name in a .seg.nrrd")
    add_model_options(p)
    add_backend_options(p)
    p.set_defaults(func=cmd_markers)

    p = subparsers.add_parser("propagate", help="segment one slice from a box/points and propagate through the volume")
    p.add_argument("volume", help="NIfTI/NRRD/MHA volume or DICOM folder")
    p.add_argument("--slice", type=arg_types.non_negative_int, required=True, metavar="K", help="slice index to start from")
    p.add_argument("--axis", default="axial", help="slice plane: axial, coronal or sagittal")
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box on the start slice (pixels)")
    p.add_argument("--point", nargs=3, type=float, action="append", metavar=("X", "Y", "LABEL"),
                   help="point on the start slice (repeatable); LABEL 1 = foreground, 0 = background")
    p.add_argument("--out", required=True, help="output: .seg.nrrd or .nii.gz/.nrrd/.mha labelmap")
    p.add_argument("--threshold", type=arg_types.probability, default=DEFAULT_SCORE_THRESHOLD, help="stop below this predicted IoU")
    add_unit_option(p, "--margin-px", "--margin", type=arg_types.non_negative_float, default=None, metavar="PX",
                    help="pixels around the previous mask's box (default: 3 at the model's 256 scale; --margin is the "
                         "deprecated spelling)")
    p.add_argument("--window", default="auto", metavar="PRESET", help="intensity preset (as for segment)")
    p.add_argument("--name", default="structure", help="segment name in a .seg.nrrd")
    add_model_options(p)
    add_backend_options(p)
    p.set_defaults(func=cmd_propagate)

    from .bench import PROTOCOLS

    p = subparsers.add_parser("bench", help="DSC/NSD of a model on a dataset folder (shared dev-set format)")
    p.add_argument("dataset_dir", help="folder holding manifest.json")
    p.add_argument("--protocol", choices=PROTOCOLS, default="box")
    p.add_argument("--every", type=arg_types.positive_int, default=5, metavar="N", help="markers: reader marks every N slices")
    p.add_argument("--jitter", type=arg_types.non_negative_int, default=0, metavar="PX", help="box: enlarge sides by random 0..PX pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=arg_types.non_negative_float, default=2.0, metavar="MM", help="NSD tolerance (mm; pixels without spacing)")
    p.add_argument("--refine", action="store_true", help="markers: refinement pass")
    p.add_argument("--datasets", default=None, help="comma-separated dataset names (default: all)")
    p.add_argument("--limit", type=arg_types.positive_int, default=None, metavar="N", help="at most N cases per dataset")
    p.add_argument("--json", required=True, metavar="OUT", help="write settings, per-case records and summary here")
    p.add_argument("--overlays", default=None, metavar="DIR", help="write one overlay PNG per case/label here")
    add_model_options(p)
    add_backend_options(p)
    p.set_defaults(func=cmd_bench)


def _check_out(path: str, inputs=()) -> Path:
    from ..io import check_outputs, suffix_of
    from ..records.record import SIDECAR_SUFFIX

    out = Path(path)
    if suffix_of(out) not in SEG_SUFFIXES:
        raise InputError(f"--out must end in {', '.join(SEG_SUFFIXES)} (got '{out.name}').")
    check_outputs([("--out", out)], inputs, companions=(SIDECAR_SUFFIX,))
    return out


def _write(mask, out: Path, image, name: str, record: "dict | None" = None) -> None:
    """The result and its record (segment tags and <out>.prompts.json) as one unit: both written or neither."""
    from .records import write_record_outputs
    from ..io import output_group, suffix_of, write_mask
    from ..records.record import TAG, record_tags
    from ..segmentation_file import write_segmentation

    with output_group() as outputs:
        if suffix_of(out) == ".seg.nrrd":
            tags = {1: {TAG: text} for text in record_tags(record).values()} if record else None
            write_segmentation(mask, out, image, [(1, name)], tags=tags, group=outputs)
        else:
            write_mask(mask, out, reference=image, group=outputs)
        if record:
            write_record_outputs(out, record, outputs)


def _volume(path: str):
    from ..io import read_image

    image = read_image(path)
    if not image.is_3d:
        raise InputError(f"{path} is a 2D image; this command needs a 3D volume (use 'segment' for 2D).")
    return image


def cmd_markers(args) -> int:
    from ..backend import describe
    from .options import backend_from_options
    from ..geometry import VolumeGeometry
    from ..markers import boxes_from_markers, read_markers
    from ..progress import tqdm_progress
    from ..volume import numpy_axis

    out = _check_out(args.out, [("the input volume", args.volume)] + [("a markers file", m) for m in args.markers])
    image = _volume(args.volume)
    arg_types.check_volume_early(image)
    markers = [m for path in args.markers for m in read_markers(path)]
    geometry = VolumeGeometry.from_image(image)
    axis = None if args.axis == "auto" else numpy_axis(args.axis, image.direction)
    plan = boxes_from_markers(markers, geometry, axis=axis, margin_mm=args.margin_mm)  # errors before any model work
    with backend_from_options(args) as backend:
        model = describe(backend)
        t0 = time.perf_counter()
        backend.set_volume(image.array, normalization=args.window, modality=image.modality, direction=image.direction)
        res = backend.segment_plan(plan, refine=args.refine, progress=tqdm_progress("markers"))
    from .records import volume_record  # the prompt record

    record = volume_record("markers", args, image, backend, res, time.perf_counter() - t0, args.name, plan=plan,
                           markers=markers, options={"refine": bool(args.refine), "margin_mm": args.margin_mm})
    _write(res.mask, out, image, args.name, record)
    for w in res.warnings:
        print(f"warning: {w}")
    print(f"segmentation: {out} ({len(markers)} lines on slices {plan.marked} along numpy axis {plan.axis}; "
          f"{len(res.slices)} slices segmented, {int(res.mask.sum())} voxels, {model}, "
          f"window {res.normalization.label if res.normalization else args.window}, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_propagate(args) -> int:
    from .options import backend_from_options
    from .commands import _points
    from ..progress import tqdm_progress
    from ..volume import numpy_axis

    if args.box is None and not args.point:
        raise InputError("Give a prompt on the start slice: --box X0 Y0 X1 Y1 and/or --point X Y LABEL.")
    out = _check_out(args.out, [("the input volume", args.volume)])
    image = _volume(args.volume)
    axis = numpy_axis(args.axis, image.direction)
    points, labels = _points(args)
    arg_types.check_prompt_early(image, args.box, points, labels, args.slice, axis)
    with backend_from_options(args) as backend:
        t0 = time.perf_counter()
        backend.set_volume(image.array, normalization=args.window, modality=image.modality, direction=image.direction)
        res = backend.propagate(args.slice, axis, box=args.box, points=points, point_labels=labels,
                                progress=tqdm_progress("propagate"), margin_px=args.margin_px,
                                score_threshold=args.threshold)
    from .records import volume_record  # the prompt record

    record = volume_record("propagate", args, image, backend, res, time.perf_counter() - t0, args.name,
                           options={"margin_px": args.margin_px, "score_threshold": args.threshold})
    _write(res.mask, out, image, args.name, record)
    for w in res.warnings:
        print(f"warning: {w}")
    print(f"segmentation: {out} (slices {res.slices[0]}..{res.slices[-1]} along numpy axis {axis}, "
          f"{int(res.mask.sum())} voxels, {time.perf_counter() - t0:.1f} s)")
    return 0


def _finite(obj):
    """JSON has no Infinity: an infinite HD95 (one mask empty) is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def cmd_bench(args) -> int:
    from .options import backend_from_options
    from .bench import BenchSettings, format_table, load_cases, run_bench
    from ..io import atomic_output, check_outputs
    from ..progress import tqdm_progress

    settings = BenchSettings(protocol=args.protocol, every=args.every, jitter=args.jitter, seed=args.seed,
                             tolerance_mm=args.tolerance, refine=args.refine,
                             datasets=tuple(args.datasets.split(",")) if args.datasets else None,
                             limit=args.limit, overlays=args.overlays)
    check_outputs([("--json", args.json)], [("the manifest", Path(args.dataset_dir) / "manifest.json")])
    load_cases(args.dataset_dir, settings)  # a malformed manifest is refused before the model loads
    with backend_from_options(args) as backend:
        result = run_bench(backend, args.dataset_dir, settings, progress=tqdm_progress(f"bench {args.protocol}"))
    out = Path(args.json)
    with atomic_output(out) as tmp:
        Path(tmp).write_text(json.dumps(_finite(result), indent=1))
    extra = f", every {args.every}" if args.protocol == "markers" else ""
    print(format_table(result["summary"], f"{result['model']['kind']} / {args.protocol}{extra}, NSD at {args.tolerance:g} mm "
                       f"({len(result['cases'])} structures, {result['wall_s']:.0f} s, peak RSS {result['peak_rss_mb']:.0f} MiB)"))
    print(f"per-case results: {out}")
    return 0
