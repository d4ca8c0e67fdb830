"""``medsamkit recist --studies ... --cluster ADDR``: one Ray task per study.

Each task runs the command's per-study function (``process_study`` of :mod:`medsamkit.cli.recist`, handed
over by the command: what the plain run does per study) on a worker whose backend is opened once (:func:`medsamkit.cluster.worker.backend_for`), and writes the
study's folder atomically into ``--out`` (which every worker must see at the same path). The driver
prints each study's lines as it ends, and writes ``cluster-summary.csv``/``.json`` into ``--out``.
"""
from __future__ import annotations

import sys
import time
from argparse import Namespace
from pathlib import Path

from ..errors import InputError
from .options import model_spec
from .worker import backend_for, cached, spec_key, where

EXTRA = ("lesions", "lesions_ok", "out")


def _visible(path, what: str) -> None:
    if path is not None and not Path(path).exists():
        raise InputError(f"{what} {path} is not visible on worker {where()}: put the inputs and --out on a "
                         "filesystem every worker mounts at the same path (docs/cluster.md).")


def recist_task(payload) -> dict:
    """One study on a worker -> {"rows", "warnings"}; raises MedSAMError for a study that fails.

    payload: (model spec, study item, RecistOptions, out root, extra args, the face's (process_study,
    model_record) functions; Ray sends them by reference)."""
    spec, item, options, out_root, extra, (process_study, model_record) = payload
    _visible(item[0], "the study")
    _visible(item[1], "the file")
    args = Namespace(**spec, **extra)

    def open_model():
        backend = backend_for(spec)
        return backend, cached(("model",) + spec_key(spec), lambda: model_record(backend, args))

    study, rows = process_study(item, options, Path(out_root), args, open_model)
    return {"rows": rows, "warnings": list(study.warnings)}


def _absolute(p):
    return None if p is None else Path(p).resolve()


def run_recist_cluster(args, todo: list, options, out_root: Path, process_study, model_record, print_study) -> int:
    """The studies ``todo`` as Ray tasks. process_study(item, options, out_root, args, open_model) -> (study,
    rows), model_record(backend, args) and print_study(name, rows, warnings, seconds, out_dir): the command's
    own functions, so every study runs and prints as in the plain run."""
    from ..recist import study_done
    from .runner import run_on_cluster
    from .summary import SUMMARY_NAME, remove_partials, result_row, write_summary

    if not todo:
        return 0
    spec = model_spec(args)
    extra = {"lines": getattr(args, "lines", None), "space": getattr(args, "space", None)}
    out_abs = out_root.resolve()
    functions = (process_study, model_record)
    items = [(name, (spec, (_absolute(folder), _absolute(src), name), options, str(out_abs), extra, functions))
             for folder, src, name in todo]

    def on_result(res, bar):
        if res.status != "ok":
            bar.write(f"{res.name}: FAILED: {res.message}", err=True)
            return
        if not study_done(out_root / res.name):
            res.status, res.message = "failed", (f"written by worker {res.worker} but not visible here: --out must "
                                                 "be on a filesystem every worker mounts at the same path.")
            bar.write(f"{res.name}: FAILED: {res.message}", err=True)
            return
        with bar.above():
            print_study(res.name, res.data["rows"], res.data["warnings"], res.seconds, out_root / res.name)

    t0 = time.perf_counter()
    results, interrupted = run_on_cluster(args, recist_task, items, desc="recist", on_result=on_result)
    remove_partials(out_abs, [name for name, _ in items])
    rows = []
    for res in results:
        lesions = res.data.get("rows", []) if res.status == "ok" else []
        rows.append(dict(result_row(res), lesions=len(lesions), out=str(out_root / res.name),
                         lesions_ok=sum(r["status"] == "ok" for r in lesions)))
    summary = Path(args.summary) if args.summary else out_root / SUMMARY_NAME
    write_summary(summary, rows, EXTRA)
    bad_studies = sum(r["status"] != "ok" for r in rows)
    bad_lesions = sum(r["lesions"] - r["lesions_ok"] for r in rows)
    print(f"recist: {len(rows) - bad_studies} of {len(rows)} studies written, "
          f"{sum(r['lesions_ok'] for r in rows)} lesion(s) segmented, {bad_lesions} failed, in "
          f"{time.perf_counter() - t0:.1f} s on Ray ({args.cluster}); summary {summary}", flush=True)
    if interrupted:
        n = sum(r["status"] == "cancelled" for r in rows)
        print(f"recist: interrupted: {n} study(ies) cancelled, nothing partial left; run the same command again to "
              "do them", file=sys.stderr, flush=True)
        raise KeyboardInterrupt from None
    return 1 if bad_studies or bad_lesions else 0
