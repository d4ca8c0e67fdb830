"""The batch's ``--cases LIST --cluster ADDR``: one Ray task per case (scheduled by :mod:`medsamkit.cluster`).

Each task runs the batch's ``run_case`` (:mod:`medsamkit.cli.batch`, handed over by the batch: what the plain
batch does per case) on a worker
that keeps one backend and one MRML context (slicer-core) for all its cases, and writes the case's
``.seg.nrrd`` (and its ``.prompts.json``) atomically where the case list says. A case whose output
and record are both there is skipped (``--force`` redoes it). The summary goes beside the case list
(``cluster-summary.csv``/``.json``) unless ``--summary`` says where.
"""
from __future__ import annotations

import time
from pathlib import Path

from .options import model_spec
from .worker import backend_for, cached
from ..errors import InputError


def case_done(case) -> bool:
    from ..records.record import sidecar_path

    return Path(case.out).is_file() and sidecar_path(case.out).is_file()


def case_task(payload) -> dict:
    """One case on a worker -> {"message", "dice"}; raises InputError with the case's message when it failed."""
    from ..mrml.context import make_context, quiet_vtk

    spec, case, args, run_case = payload
    if not Path(case.volume).exists():
        from .worker import where

        raise InputError(f"{case.volume} is not visible on worker {where()}: put the cases and their outputs on a "
                         "filesystem every worker mounts at the same path (docs/cluster.md).")
    backend = backend_for(spec)
    ctx = cached(("mrml-context",), lambda: (quiet_vtk(), make_context())[1])
    report = run_case(backend, ctx, case, args)
    if not report.ok:
        raise InputError(report.message)
    return {"message": report.message, "dice": report.dice}


def run_batch_cluster(args, cases: list, run_case) -> int:
    """The batch's ``cases`` as Ray tasks; run_case(backend, ctx, case, args) -> CaseReport: the batch's own."""
    from dataclasses import replace

    from .runner import run_on_cluster
    from .summary import SUMMARY_NAME, finish_cases, remove_partials, result_row

    todo = []
    for case in cases:
        if not getattr(args, "force", False) and case_done(case):
            print(f"{case.name}: already done ({case.out}); skipped (use --force to redo)", flush=True)
        else:
            todo.append(case)
    beside = Path(args.cases) if args.cases else Path(args.out)
    summary = Path(args.summary) if args.summary else beside.resolve().parent / SUMMARY_NAME
    if not todo:
        return 0
    spec = model_spec(args)
    items = [(case.name, (spec, replace(case, **{k: str(Path(v).resolve()) for k, v in vars(case).items()
                                                 if k in ("volume", "out", "markers", "boxes", "reference") and v}),
                          args, run_case)) for case in todo]

    def on_result(res, bar):
        text = f"{res.name} {'ok' if res.status == 'ok' else 'FAILED'} ({res.seconds:.1f} s): "
        bar.write(text + (res.data.get("message", "") if res.status == "ok" else res.message), err=res.status != "ok")

    t0 = time.perf_counter()
    results, interrupted = run_on_cluster(args, case_task, items, desc="cases", on_result=on_result)
    from ..records.record import sidecar_path

    by_folder: dict = {}
    for case in todo:
        out = Path(case.out).resolve()
        by_folder.setdefault(out.parent, set()).update({out.name, sidecar_path(out).name})
    for folder, names in by_folder.items():
        remove_partials(folder, names)
    rows = [dict(result_row(res), out=case.out, dice=res.data.get("dice")) for res, case in zip(results, todo)]
    return finish_cases(summary, rows, ("out", "dice"), prog="medsam-batch", done="written", t0=t0,
                        where=f" on Ray ({args.cluster})", interrupted=interrupted)
