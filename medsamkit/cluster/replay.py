"""``medsamkit replay --cases CSV [--cluster ADDR]``: many records, one per case.

The CSV (header row) has ``record``, ``volume``, ``out`` and optionally ``against`` and ``name``; paths
are relative to the CSV. Each case runs the command's ``replay_case`` (:mod:`medsamkit.cli.records`, handed
over by the command: what ``replay`` does for one record) on a worker that opens the backend for each recorded model once
(:func:`medsamkit.records.replay_backend.open_replay_backend`, cached per worker), and writes the
case's output and its record atomically. Without ``--cluster`` the cases run one after the other in
this process, through the same function. A case whose output and record are both there is skipped
(``--force`` redoes it); a failing case is reported and the others run. The summary goes beside the
CSV (``cluster-summary.csv``/``.json``) unless ``--summary`` says where.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from ..errors import InputError
from .worker import cached

COLUMNS = ("record", "volume", "out")


def read_replay_cases(path) -> list[dict]:
    """[{name, record, volume, out, against}] from the CSV (paths made relative to its folder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Case list not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise InputError(f"{path} must be a CSV with a header row 'record,volume,out' (and optionally 'against', "
                         "'name') and one row per record to replay.")
    cases = []
    for n, row in enumerate(rows, 1):
        if not all((row.get(c) or "").strip() for c in COLUMNS):
            raise InputError(f"{path}, case {n}: record, volume and out are all needed.")
        fix = {k: str((path.parent / row[k].strip()).resolve()) for k in COLUMNS + ("against",)
               if (row.get(k) or "").strip()}
        cases.append({"name": (row.get("name") or "").strip() or f"case {n}", "against": None, **fix})
    return cases


def case_done(case: dict) -> bool:
    from ..records.record import sidecar_path

    return Path(case["out"]).is_file() and sidecar_path(case["out"]).is_file()


def replay_task(payload) -> dict:
    """One case on a worker (or in this process) -> replay_case's summary without its model object."""
    from ..records.replay_backend import open_replay_backend

    case, options, replay_case = payload
    spec, model_kind, checkpoint, adapter, device, engine, remote = options

    def open_model(record):
        recorded = json.dumps(record["entries"][0]["model"] if record.get("entries") else {}, sort_keys=True)
        key = ("replay", recorded, json.dumps([str(v) for v in options]))
        return cached(key, lambda: open_replay_backend(record, spec, model_kind, checkpoint, adapter, device, engine,
                                                       **remote))

    for what in ("record", "volume"):
        if not Path(case[what]).exists():
            from .worker import where

            raise InputError(f"{case[what]} is not visible on worker {where()}: put the records, volumes and outputs "
                             "on a filesystem every worker mounts at the same path (docs/cluster.md).")
    return replay_case(case["record"], case["volume"], case["out"], case.get("against"), open_model)


def run_replay_cases(args, options: tuple, replay_case, print_replay) -> int:
    """The cases of ``args.cases``, on Ray (``args.cluster``) or here. options: the command's
    replay_model_options(args); replay_case / print_replay: the command's own functions."""
    from ..records.record import sidecar_path
    from .runner import ItemResult, call_item
    from .summary import SUMMARY_NAME, finish_cases, remove_partials, result_row

    cases = read_replay_cases(args.cases)
    todo = []
    for case in cases:
        if not args.force and case_done(case):
            print(f"{case['name']}: already done ({case['out']}); skipped (use --force to redo)", flush=True)
        else:
            todo.append(case)
    summary = Path(args.summary) if args.summary else Path(args.cases).resolve().parent / SUMMARY_NAME
    if not todo:
        return 0
    items = [(case["name"], (case, options, replay_case)) for case in todo]

    def on_result(res, bar):
        if res.status != "ok":
            bar.write(f"{res.name}: FAILED: {res.message}", err=True)
            return
        with bar.above():
            print(f"{res.name}:", flush=True)
            print_replay(res.data, todo[[c["name"] for c in todo].index(res.name)]["out"])

    t0 = time.perf_counter()
    interrupted = False
    if args.cluster:
        from .runner import run_on_cluster

        results, interrupted = run_on_cluster(args, replay_task, items, desc="replay", on_result=on_result)
    else:
        from .runner import CountsBar

        from .worker import close_cached

        bar, results = CountsBar(len(items), "replay", True), []
        try:
            for name, payload in items:
                res = call_item(replay_task, name, payload)
                on_result(res, bar)
                results.append(res)
        finally:
            close_cached()
    for case in todo:
        out = Path(case["out"])
        remove_partials(out.parent, {out.name, sidecar_path(out).name})
    rows = [dict(result_row(res or ItemResult(c["name"], "cancelled")), out=c["out"],
                 identical=(res.data.get("identical") if res is not None and res.status == "ok" else None))
            for res, c in zip(results, todo)]
    return finish_cases(summary, rows, ("out", "identical"), prog="replay", done="replayed", t0=t0,
                        where=f" on Ray ({args.cluster})" if args.cluster else "", interrupted=interrupted)

