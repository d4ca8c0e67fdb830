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

from ..errors import InputError, MedSAMError


def add_parser(subparsers) -> None:
    from .options import add_backend_options, add_unit_option
    from .options import add_model_options
    from ..markers import DEFAULT_MARGIN_MM
    from ..recist import SINGLE_SLICE_MODES

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
    add_model_options(p)
    add_backend_options(p)
    from ..cluster.options import add_cluster_options

    add_cluster_options(p)
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
        from ..recist import volume_name

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
            items = studies_in_folder(src)
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
        name = (lines_stem(sr) if is_lines_file(sr) else folder.name) or "study"
        seen[name] = seen.get(name, 0) + 1
        out.append((folder, sr, name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return out


LINES_SUFFIXES = (".lines.csv", ".lines.mrk.json", ".lines.json")


def is_lines_file(path) -> bool:
    """A lines file (CSV of end points or line markups) rather than a DICOM SR."""
    return path is not None and Path(path).name.lower().endswith((".csv", ".json"))


def lines_stem(path) -> str:
    name = Path(path).name
    for suffix in LINES_SUFFIXES + (".mrk.json", ".csv", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def studies_in_folder(src: Path) -> list:
    """The studies of a --studies folder: each sub-folder is a DICOM study (series + SR), and each
    ``NAME.lines.csv`` / ``NAME.lines.mrk.json`` with its volume ``NAME.nii.gz`` (any image suffix) or DICOM
    series folder ``NAME/`` beside it is a volume + lines study -> [(folder or volume, SR or lines file)]."""
    from ..io import suffix_of

    entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
    lines = {lines_stem(p): p for p in entries if p.is_file() and p.name.lower().endswith(LINES_SUFFIXES)}
    volumes: dict = {}
    for p in entries:
        stem = p.name if p.is_dir() else p.name[: -len(suffix_of(p))] if suffix_of(p) else None
        if stem in lines and not p.name.lower().endswith(LINES_SUFFIXES):
            volumes.setdefault(stem, []).append(p)
    items = []
    for stem, found in sorted(lines.items()):
        if len(volumes.get(stem, [])) != 1:
            have = ", ".join(p.name for p in volumes.get(stem, [])) or "none"
            raise InputError(f"--studies {src}: {found.name} needs exactly one volume named {stem}.nii.gz (or "
                             f".nrrd/.mha, or a DICOM series folder {stem}/) beside it; found {have}.")
        items.append((volumes[stem][0], found))
    paired = {p for v in volumes.values() for p in v}
    items += [(p, None) for p in entries if p.is_dir() and p not in paired]
    return sorted(items, key=lambda item: item[0].name)


def model_record(backend, args) -> dict:
    from .. import __version__

    info = backend.info()
    return {"model": info.kind, "device": info.device, "engine": str(info.extra.get("engine", "")),
            "weights": args.checkpoint or ("server" if info.remote else "bundled"),
            "model_id": str(info.extra.get("model_id", "")), "adapter": args.adapter or "",
            "version": f"medsamkit {__version__}"}


def process_study(item, options, out_root: Path, args, open_model, progress=None):
    """One study, as every run does it (here and on a cluster worker): read and check it (before any model
    work), segment its lesions, write its folder atomically -> (study, rows). ``open_model()`` -> (backend,
    model record), called once the study is read. Raises MedSAMError for a study that fails."""
    from ..recist import load_lines_study, load_study, segment_study, write_study

    folder, src, name = item
    if getattr(args, "lines", None) or is_lines_file(src):
        study = load_lines_study(folder, src, options, space=getattr(args, "space", None), name=name)
    else:
        study = load_study(folder, src, options, name=name)
    backend, model = open_model()
    results = segment_study(backend, study, options, progress=progress)
    return study, write_study(out_root / name, study, results, model, options)


def print_study(name: str, rows: list, warnings: list, seconds: float, out_dir: Path) -> None:
    """The lines a finished study prints: its lesions, each with its volume or its error, and its warnings."""
    ok = [r for r in rows if r["status"] == "ok"]
    print(f"{name}: {len(ok)} of {len(rows)} lesion(s) segmented in {seconds:.1f} s -> {out_dir}", flush=True)
    for r in rows:
        state = f"{r['volume_ml']} mL, long axis {r['mask_long_mm']} mm (reader {r['reader_long_mm']} mm)" \
            if r["status"] == "ok" else f"FAILED: {r['message']}"
        print(f"  {r['lesion']}: {state}", file=sys.stdout if r["status"] == "ok" else sys.stderr, flush=True)
    for w in warnings:
        print(f"  warning: {w}", flush=True)


def recist_options(args):
    from ..recist import RecistOptions

    return RecistOptions(margin_mm=args.margin_mm, refine=args.refine, window=args.window,
                         single_slice=args.single_slice, series_uid=args.series, write_sr=args.volume_sr)


def _check_writable(out_root: Path, name: str) -> None:
    """--out must be writable before the model loads (OutputError); the folders made to check it are removed
    again, so a run that fails later leaves no empty --out behind."""
    from ..io import partial_dir

    made = [p for p in (out_root, *out_root.parents) if not p.exists()]  # deepest first
    partial_dir(out_root / name).rmdir()
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break


def cmd_recist(args) -> int:
    from .options import backend_from_options
    from ..progress import tqdm_progress
    from ..io import check_output_folder
    from ..recist import study_done

    studies = study_list(args)
    lines_route = bool(args.lines)
    out_root = Path(args.out)
    for folder, sr, name in studies:  # before any work: a study's results never replace or join its inputs
        check_output_folder(f"--out {out_root}: the results folder", out_root / name,
                            [("the volume" if lines_route else "the study folder", folder),
                             ("the lines file" if lines_route else "the SR", sr)])
    _check_writable(out_root, studies[0][2])
    options = recist_options(args)
    single = len(studies) == 1 and (args.study is not None or lines_route)
    todo = [s for s in studies if args.force or not study_done(out_root / s[2])]
    for item in studies:
        if item not in todo:
            print(f"{item[2]}: already done ({out_root / item[2]}); skipped (use --force to redo)")
    if getattr(args, "cluster", None):
        from ..cluster.recist import run_recist_cluster

        return run_recist_cluster(args, todo, options, out_root, process_study, model_record, print_study)
    if not todo:
        return 0
    bar = None if args.quiet else tqdm_progress("recist")
    opened: list = []
    failed_studies, failed_lesions, n_ok = 0, 0, 0
    t_all = time.perf_counter()

    def open_model():
        if not opened:
            backend = backend_from_options(args)
            opened.append((backend, model_record(backend, args)))
        return opened[0]

    try:
        for n, item in enumerate(todo):
            name = item[2]
            t0 = time.perf_counter()
            try:
                progress = None if bar is None else (lambda d, t, text, n=n: bar(n, len(todo), text))
                study, rows = process_study(item, options, out_root, args, open_model, progress)
            except MedSAMError as exc:
                from ..progress import Cancelled

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
            print_study(name, rows, study.warnings, time.perf_counter() - t0, out_root / name)
    finally:
        if bar is not None:
            bar.close()
        if opened:
            opened[0][0].close()
    if len(todo) > 1:
        print(f"recist: {len(todo) - failed_studies} of {len(todo)} studies written, {n_ok} lesion(s) segmented, "
              f"{failed_lesions} failed, in {time.perf_counter() - t_all:.1f} s")
    return 1 if failed_studies or failed_lesions else 0
