"""``medsamkit replay`` and ``medsamkit report``, and the hooks that record CLI results.

Hooks (one call each in cli/commands.py / cli/volume.py): :func:`record_slice_result` for ``segment`` (a JSON
sidecar next to the mask), :func:`volume_record` + :func:`write_record_outputs` for ``markers`` and
``propagate`` (the record goes into the ``.seg.nrrd`` segment tags and into the sidecar).

    medsamkit replay lesion.seg.nrrd --volume CT.nii.gz --out replay.seg.nrrd [--model sam_vit_b --checkpoint F]
    medsamkit report --case lesion.seg.nrrd CT.nii.gz [--case ...] --out-dir report/
"""
from __future__ import annotations

import time
from pathlib import Path

from . import arg_types
from ..errors import InputError
from ..records.record import (append_entry, geometry_of, make_entry, markers_block, model_block, plan_block, prompt_block,
                      prompt_kind, result_block, window_block, write_sidecar)


def _backend_spec(args) -> str:
    return getattr(args, "backend", None) or "local"


def record_slice_result(args, out, image, backend, res, seconds: float, segment_name: str = "Segment_1",
                        group=None) -> dict:
    """``segment``: record one box/points result (``res``: segment.SegmentResult) in ``<out>.prompts.json``.

    group: an :class:`medsamkit.io.OutputGroup` the sidecar joins (written with the mask, or neither)."""
    t0 = time.perf_counter()
    geom = geometry_of(image)
    axis = res.axis if image.is_3d else None
    points = [p[:2] for p in args.point] if args.point else None
    labels = [int(p[2]) for p in args.point] if args.point else None
    prompt = prompt_block(geom, axis, res.slice_index, args.box, points, labels)
    entry = make_entry(prompt_kind(args.box, points), geom, prompt, window_block(res.normalization, args.window),
                       model_block(backend, _backend_spec(args)), result_block(res.slice_mask, snapshot=res.mask),
                       segment_id="Segment_1", segment_name=segment_name, plane_axis=axis, plane_index=res.slice_index,
                       model_seconds=seconds, region="slice" if image.is_3d else "volume")
    record = append_entry(None, entry)
    write_record_outputs(out, record, group)
    record["overhead_s"] = time.perf_counter() - t0  # not stored: for the benchmark
    return record


def volume_record(kind: str, args, image, backend, res, seconds: float, segment_name: str, plan=None,
                  markers=None, options: dict | None = None, segment_id: str = "Segment_1") -> dict:
    """``markers`` / ``propagate`` (and batch): the record of one 3D run (``res``: VolumeSegmentation)."""
    geom = geometry_of(image)
    if plan is not None:
        prompt = prompt_block(geom)
        prompt["plan"] = plan_block(plan)
        prompt["markers"] = markers_block(markers) if markers else None
        axis, index = plan.axis, None
    else:
        points = [p[:2] for p in args.point] if getattr(args, "point", None) else None
        labels = [int(p[2]) for p in args.point] if getattr(args, "point", None) else None
        axis, index = res.axis, int(args.slice)
        prompt = prompt_block(geom, axis, index, args.box, points, labels)
    prompt["options"] = {k: v for k, v in (options or {}).items() if v is not None}
    entry = make_entry(kind, geom, prompt, window_block(res.normalization, getattr(args, "window", None))
                       if res.normalization is not None else {"mode": "none"},
                       model_block(backend, _backend_spec(args)),
                       result_block(res.mask, scores=res.scores, slices=res.slices, snapshot=res.mask),
                       segment_id=segment_id, segment_name=segment_name, plane_axis=axis, plane_index=index,
                       model_seconds=seconds, region="volume")
    return append_entry(None, entry)


def write_record_outputs(out, record: dict, group=None) -> Path:
    """The sidecar next to ``out`` (the .seg.nrrd itself carries the record in its segment tags), atomically;
    group: an :class:`medsamkit.io.OutputGroup` it joins, so the result and its record are one unit."""
    if group is None:
        return write_sidecar(out, record)
    from ..io import atomic_output
    from ..records.record import dumps, sidecar_path

    path = sidecar_path(out)
    text = dumps(record)
    with atomic_output(path, group=group) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# replay / report commands
# ---------------------------------------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    from .options import add_backend_options
    from .options import add_model_options

    p = subparsers.add_parser("replay", help="re-run the prompts recorded with a result (same or another model)")
    p.add_argument("record", nargs="?", help=".seg.nrrd written by medsamkit (record in its segment tags) or a "
                   ".prompts.json")
    p.add_argument("--volume", default=None, help="the image/volume the record was made on (required with RECORD)")
    p.add_argument("--out", default=None, help="output .seg.nrrd (3D) or .nii.gz/.nrrd/.png (required with RECORD)")
    p.add_argument("--against", default=None, metavar="SEG",
                   help="compare with this segmentation (default: the model's recorded result)")
    p.add_argument("--cases", default=None, metavar="CSV",
                   help="many records: a CSV with columns record,volume,out (and optionally against, name); paths "
                        "relative to the file; a case whose output and record are there is skipped (--force)")
    p.add_argument("--force", action="store_true", help="with --cases: redo cases whose output is already there")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    add_backend_options(p)
    from ..cluster.options import add_cluster_options

    add_cluster_options(p)
    p.set_defaults(func=cmd_replay, engine=None)

    p = subparsers.add_parser("report", help="annotation report (CSV + HTML): interactions, time, manual edits, "
                              "slices to review")
    p.add_argument("--case", nargs=2, action="append", required=True, metavar=("SEG", "VOLUME"),
                   help="a .seg.nrrd (with its record) and the volume it was made on (repeatable)")
    p.add_argument("--out-dir", required=True, help="folder for report.csv, review.csv and report.html")
    p.add_argument("--top", type=arg_types.probability, default=0.2,
                   help="share of slices flagged for review, 0..1 (default 0.2)")
    p.set_defaults(func=cmd_report)


def replay_case(record_path, volume, out, against, open_model, progress=None) -> dict:
    """One record replayed, as every run does it (here and on a cluster worker): read the record and the
    volume, replay through ``open_model(record)`` -> (backend, model block), write ``out`` and its record
    sidecar -> {"rows" (the Dice table), "entries", "seconds", "identical", "model"}."""
    import numpy as np

    from ..io import check_outputs, output_group, read_image, suffix_of, write_mask
    from ..records.record import SIDECAR_SUFFIX, read_record, record_tags
    from ..records.replay import check_image, dice_table, recorded_segments, replay
    from ..segmentation_file import write_segmentation

    out = Path(out)
    if suffix_of(out) not in (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".png"):
        raise InputError(f"--out must end in .seg.nrrd, .nii.gz, .nii, .nrrd, .mha or .png (got '{out.name}').")
    check_outputs([("--out", out)], replay_inputs(record_path, volume, against), companions=(SIDECAR_SUFFIX,))
    record = read_record(record_path)
    image = read_image(volume)
    original = _segments_of(against, image) if against else None  # a damaged file stops us before the model
    check_image(record, image)  # another shape or geometry is refused before the model loads
    backend, model = open_model(record)
    result = replay(backend, record, image, model, progress=progress)
    if original is None:
        original = recorded_segments(record)
        if not original and str(record_path).lower().endswith(".seg.nrrd"):
            original = _segments_of(record_path, image)
    seg_ids = list(result.segments)
    with output_group() as outputs:  # the result and its record: both written or neither
        if suffix_of(out) == ".seg.nrrd":
            labels = np.zeros(result.segments[seg_ids[0]].shape, np.uint8)
            for n, sid in enumerate(seg_ids, 1):  # later segments overwrite earlier ones (Slicer's default)
                labels[result.segments[sid] > 0] = n
            tags = record_tags(result.record)
            write_segmentation(labels, out, image, [(n, result.names[s]) for n, s in enumerate(seg_ids, 1)],
                               tags={n: {"MedSAM.PromptRecord": tags[s]} for n, s in enumerate(seg_ids, 1)},
                               segment_ids=seg_ids, group=outputs)
        else:
            write_mask(result.segments[seg_ids[0]], out, reference=image if image.is_3d else None, group=outputs)
        write_record_outputs(out, result.record, outputs)
    return {"rows": dice_table(result, original), "entries": len(result.entries), "seconds": result.seconds,
            "identical": result.all_identical, "model": model}


def print_replay(info: dict, out) -> None:
    from ..records.replay import format_table

    model = info["model"]
    print(format_table(info["rows"]))
    same = "voxel-identical to the record" if info["identical"] else "different from the record"
    print(f"replayed {info['entries']} entries in {info['seconds']:.1f} s on {model['kind']} "
          f"({model.get('engine')}, {model.get('backend')}): {same}; written {out}", flush=True)


def replay_model_options(args) -> tuple:
    """(backend spec, model, checkpoint, adapter, device, engine, remote options) of open_replay_backend."""
    from ..backend import is_remote_spec

    remote = {}
    if is_remote_spec(args.backend):
        if args.model or args.checkpoint or args.adapter:
            raise InputError("--model/--checkpoint/--adapter choose a local model; with --backend URL the server's "
                             "model is used.")
        remote = {"token_file": args.server_token_file, "timeout": args.server_timeout}
    return (args.backend, args.model, args.checkpoint, args.adapter, args.device, getattr(args, "engine", None),
            remote)


def cmd_replay(args) -> int:
    from ..records.replay_backend import open_replay_backend
    from ..progress import tqdm_progress

    if args.cases:
        if args.record or args.volume or args.out:
            raise InputError("Give one RECORD with --volume and --out, or --cases CSV for many (not both).")
        from ..cluster.replay import run_replay_cases

        return run_replay_cases(args, replay_model_options(args), replay_case, print_replay)
    if not (args.record and args.volume and args.out):
        raise InputError("replay needs RECORD, --volume (the volume it was made on) and --out; or --cases CSV.")
    if getattr(args, "cluster", None):
        raise InputError("--cluster runs many records: give them with --cases CSV.")
    spec, model_kind, checkpoint, adapter, device, engine, remote = replay_model_options(args)
    opened = []

    def open_model(record):
        opened.append(open_replay_backend(record, spec, model_kind, checkpoint, adapter, device, engine, **remote))
        return opened[-1]

    try:
        info = replay_case(args.record, args.volume, args.out, args.against, open_model,
                           progress=None if args.quiet else tqdm_progress("replay"))
    finally:
        for backend, _ in opened:
            backend.close()
    print_replay(info, args.out)
    return 0


def replay_inputs(record, volume, against) -> list:
    """The files ``replay`` reads: none of them may be one of its outputs (or an output's sidecar)."""
    from ..records.record import sidecar_path

    inputs = [("the record", record), ("--volume", volume), ("--against", against)]
    if str(record).lower().endswith(".seg.nrrd"):
        inputs.append(("the record's sidecar", sidecar_path(record)))
    return inputs


def _segments_of(path, image=None) -> dict:
    """{segment ID: mask} of a .seg.nrrd (single- or multi-layer) or {"Segment_1": mask} of a label file,
    read through the checked reader (truncated files refused); image: the volume it must lie on."""
    import SimpleITK as sitk  # noqa: F401  (read_label_file needs it)
    import numpy as np

    from ..file_checks import read_label_file

    img = read_label_file(path)
    arr = sitk.GetArrayFromImage(img)
    if image is not None:
        want = tuple(image.array.shape if image.is_3d else image.array.shape[:2])
        have = tuple(arr.shape[:3] if arr.ndim == 4 else arr.shape)
        if have != want:
            raise InputError(f"{path} has shape {have} (z, y, x), the volume {want}; give the segmentation made on "
                             "that volume.")
    keys = set(img.GetMetaDataKeys())
    out, n = {}, 0
    while f"Segment{n}_ID" in keys:
        value = int(img.GetMetaData(f"Segment{n}_LabelValue")) if f"Segment{n}_LabelValue" in keys else 1
        layer = int(img.GetMetaData(f"Segment{n}_Layer")) if f"Segment{n}_Layer" in keys else 0
        data = arr[..., layer] if arr.ndim == 4 else arr
        out[img.GetMetaData(f"Segment{n}_ID")] = (data == value).astype(np.uint8)
        n += 1
    return out or {"Segment_1": (arr > 0).astype(np.uint8)}


def cmd_report(args) -> int:
    from ..io import check_output_folder, check_outputs
    from ..records.record import read_record
    from ..records.report import REPORT_FILES, CaseInput, write_report

    out_dir = Path(args.out_dir)
    inputs = [("--case", p) for case in args.case for p in case]
    check_output_folder("--out-dir", out_dir, [(label, p) for label, p in inputs if Path(p).is_dir()])
    check_outputs([("--out-dir", out_dir / name) for name in REPORT_FILES], inputs)
    cases = []
    for seg, volume in args.case:
        cases.append(CaseInput(name=Path(seg).name.split(".")[0], record=read_record(seg),
                               final=_segments_of(seg), volume_path=volume))
    paths = write_report(cases, args.out_dir, top=args.top)
    for p in paths:
        print(f"written {p}")
    return 0
