"""``medsamkit recist``: RECIST measurements in a DICOM SR -> 3D lesion masks as DICOM SEG, per study.

Without an SR: ``--volume V --lines F`` (V a NIfTI/NRRD file or a DICOM series folder, F a CSV of end
points with their coordinate system, or Slicer line markups) runs the same pipeline on one volume
(medsamkit.recist.load_lines_study); the DICOM SEG is written when V is a DICOM series.

Thin, like cli.py: find the studies, skip finished ones (resumable), read and check each study
before any model work (medsamkit.recist.load_study), segment its lesions through the backend the
other commands use, write the study's folder atomically (medsamkit.recist.write_study), print one
line per study. A lesion that fails is a row with its error in the study's table; a study that
fails is reported and the next one runs. Exit status: 0 all lesions segmented, 1 some lesion or
study failed, 2 bad usage (or the one study given failed).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .errors import InputError, MedSAMError


def add_parser(subparsers) -> None:
    from .backend.cli_options import add_backend_options, add_unit_option
    from .cli import _add_model_options
    from .markers import DEFAULT_MARGIN_MM
    from .recist import SINGLE_SLICE_MODES

    p = subparsers.add_parser("recist", help="RECIST lines in a DICOM SR -> 3D lesion masks as DICOM SEG (+ table)")
    p.add_argument("study", nargs="?", help="study folder: the measured DICOM series and the SR (any layout)")
    p.add_argument("--sr", default=None, metavar="FILE", help="the TID 1500 SR (default: the one in the study folder)")
    p.add_argument("--studies", default=None, metavar="LIST|DIR",
                   help="many studies: a text file with one study folder per line (optionally ',SR_FILE'), "
                        "or a folder whose sub-folders are studies")
    p.add_argument("--volume", default=None, metavar="IMAGE|SERIES_DIR",
                   help="without an SR: the volume the lines were measured on (NIfTI/NRRD/MHA, or a DICOM series "
                        "folder: then a DICOM SEG is written too); use with --lines")
    p.add_argument("--lines", default=None, metavar="CSV|MRK_JSON",
                   help="without an SR: the lines, as a CSV 'lesion,x1,y1,z1,x2,y2,z2,space' (rows of one lesion "
                        "together; space LPS or RAS) or Slicer line markups (.mrk.json, lines named 'LESION: ...')")
    p.add_argument("--space", default=None, type=str.upper, choices=("LPS", "RAS"),
                   help="coordinate system of a --lines CSV without a 'space' column")
    p.add_argument("--out", required=True, metavar="OUT_DIR",
                   help="output folder; one sub-folder per study (with --volume: named after the volume)")
    p.add_argument("--series", default=None, metavar="UID", help="series the lines were measured on (default: "
                   "the one the SR refers to)")
    p.add_argument("--single-slice", choices=SINGLE_SLICE_MODES, default="propagate",
                   help="lesions measured on one slice: propagate from it (default) or segment that slice only")
    add_unit_option(p, "--margin-mm", "--margin", type=float, default=DEFAULT_MARGIN_MM, metavar="MM",
                    help=f"box margin around the lines in mm (default {DEFAULT_MARGIN_MM:g}, as in markers, the batch "
                         "and the Slicer effect)")
    p.add_argument("--refine", action="store_true", help="re-prompt slices that disagree with their neighbours")
    p.add_argument("--window", default="auto", metavar="PRESET", help="intensity: soft-tissue, lung, brain, W,L, auto")
    p.add_argument("--volume-sr", action="store_true", help="also write a TID 1500 SR with each lesion's volume, "
                   "linked to the SEG")
    p.add_argument("--force", action="store_true", help="redo studies whose output is already complete")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    add_backend_options(p)
    p.set_defaults(func=cmd_recist)


def study_list(args) -> list[tuple[Path, "Path | None", str]]:
    """[(folder, SR file or None, unique name)] from STUDY or --studies;
    [(volume, lines file, name)] for --volume/--lines."""
    lines_route = bool(getattr(args, "volume", None) or getattr(args, "lines", None))
    if lines_route:
        if not (args.volume and args.lines):
            raise InputError("--volume and --lines go together: the volume the lines were measured on and the lines "
                             "file (CSV or .mrk.json).")
        if args.study or args.studies or args.sr:
            raise InputError("Give either a study with its SR (STUDY [--sr FILE], --studies) or --volume with "
                             "--lines, not both.")
        from .recist import volume_name

        return [(Path(args.volume), Path(args.lines), volume_name(args.volume))]
    if getattr(args, "space", None):
        raise InputError("--space states the coordinate system of a --lines CSV; an SR states its own.")
    if bool(args.study) == bool(args.studies):
        raise InputError("Give one study folder, or --studies LIST|DIR for many (not both); or --volume with "
                         "--lines for lines without an SR.")
    if args.study:
        items = [(Path(args.study), Path(args.sr) if args.sr else None)]
    else:
        if args.sr:
            raise InputError("--sr names the SR of one study; with --studies put 'FOLDER,SR_FILE' lines in the list.")
        src = Path(args.studies)
        if src.is_dir():
            items = [(p, None) for p in sorted(src.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        elif src.is_file():
            items = []
            for line in src.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                folder, _, sr = line.partition(",")
                base = src.parent
                items.append(((base / folder.strip()), (base / sr.strip()) if sr.strip() else None))
        else:
            raise InputError(f"--studies: {src} is neither a list file nor a folder.")
        if not items:
            raise InputError(f"--studies {src} names no study folder.")
    out, seen = [], {}
    for folder, sr in items:
        name = folder.name or "study"
        seen[name] = seen.get(name, 0) + 1
        out.append((folder, sr, name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return out


def model_record(backend, args) -> dict:
    from . import __version__

    info = backend.info()
    return {"model": info.kind, "device": info.device, "engine": str(info.extra.get("engine", "")),
            "weights": args.checkpoint or ("server" if info.remote else "bundled"),
            "model_id": str(info.extra.get("model_id", "")), "adapter": args.adapter or "",
            "version": f"medsamkit {__version__}"}


def cmd_recist(args) -> int:
    from .backend.cli_options import backend_from_options
    from .progress import tqdm_progress
    from .recist import RecistOptions, load_lines_study, load_study, segment_study, study_done, write_study

    from .io import check_output_folder, partial_dir

    studies = study_list(args)
    lines_route = bool(args.lines)
    out_root = Path(args.out)
    for folder, sr, name in studies:  # before any work: a study's results never replace or join its inputs
        check_output_folder(f"--out {out_root}: the results folder", out_root / name,
                            [("the volume" if lines_route else "the study folder", folder),
                             ("the lines file" if lines_route else "the SR", sr)])
    partial_dir(out_root / studies[0][2]).rmdir()  # --out must be writable before the model loads (OutputError)
    options = RecistOptions(margin_mm=args.margin_mm, refine=args.refine, window=args.window,
                            single_slice=args.single_slice, series_uid=args.series, write_sr=args.volume_sr)
    single = len(studies) == 1 and (args.study is not None or lines_route)
    todo = [s for s in studies if args.force or not study_done(out_root / s[2])]
    for item in studies:
        if item not in todo:
            print(f"{item[2]}: already done ({out_root / item[2]}); skipped (use --force to redo)")
    if not todo:
        return 0
    bar = None if args.quiet else tqdm_progress("recist")
    backend, model = None, None
    failed_studies, failed_lesions, n_ok = 0, 0, 0
    t_all = time.perf_counter()
    try:
        for n, (folder, sr, name) in enumerate(todo):
            t0 = time.perf_counter()
            try:
                if lines_route:  # every input check before the model loads
                    study = load_lines_study(folder, sr, options, space=args.space, name=name)
                else:
                    study = load_study(folder, sr, options, name=name)
                if backend is None:
                    backend = backend_from_options(args)
                    model = model_record(backend, args)
                progress = None if bar is None else (lambda d, t, text, n=n: bar(n, len(todo), text))
                results = segment_study(backend, study, options, progress=progress)
                rows = write_study(out_root / name, study, results, model, options)
            except MedSAMError as exc:
                from .progress import Cancelled

                if single or isinstance(exc, Cancelled):
                    raise
                failed_studies += 1
                print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            ok = [r for r in rows if r["status"] == "ok"]
            n_ok += len(ok)
            failed_lesions += len(rows) - len(ok)
            if bar is not None:
                bar.close()
            print(f"{name}: {len(ok)} of {len(rows)} lesion(s) segmented in {time.perf_counter() - t0:.1f} s -> "
                  f"{out_root / name}", flush=True)
            for r in rows:
                state = f"{r['volume_ml']} mL, long axis {r['mask_long_mm']} mm (reader {r['reader_long_mm']} mm)" \
                    if r["status"] == "ok" else f"FAILED: {r['message']}"
                print(f"  {r['lesion']}: {state}", file=sys.stdout if r["status"] == "ok" else sys.stderr, flush=True)
            for w in study.warnings:
                print(f"  warning: {w}", flush=True)
    finally:
        if bar is not None:
            bar.close()
        if backend is not None:
            backend.close()
    if len(todo) > 1:
        print(f"recist: {len(todo) - failed_studies} of {len(todo)} studies written, {n_ok} lesion(s) segmented, "
              f"{failed_lesions} failed, in {time.perf_counter() - t_all:.1f} s")
    return 1 if failed_studies or failed_lesions else 0
