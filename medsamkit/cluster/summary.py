"""The end of a cluster run: the temporary files of killed tasks removed, the summary written (CSV + JSON) and
reported."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

SUMMARY_NAME = "cluster-summary.csv"
COLUMNS = ("item", "status", "seconds", "worker", "message")


def remove_partials(folder: Path, names) -> list:
    """Remove what a killed task left beside its output in ``folder``: the temporary ``.NAME.xxxx.partial``
    folder of a study (medsamkit.recist.write_study) or ``.NAME.xxxx.partial.ext`` file of a case
    (medsamkit.io.atomic_output), and the ``.old`` folder of a study being redone. -> the paths removed."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    wanted = {str(n) for n in names}
    pattern = re.compile(r"^\.(?P<name>.+)\.[^.]+\.(partial|old)(\..*)?$")
    for p in Path(folder).iterdir():
        m = pattern.match(p.name)
        if m and m.group("name") in wanted:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_summary(path: Path, rows: list, extra: tuple = ()) -> tuple:
    """``rows`` (dicts with COLUMNS + ``extra``) -> ``path`` (CSV) and the same name .json, each atomically."""
    from ..io import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + tuple(extra), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    json_path = path.with_suffix(".json")
    with atomic_output(path) as tmp:
        Path(tmp).write_text(buf.getvalue(), encoding="utf-8")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "cancelled")}
    with atomic_output(json_path) as tmp:
        Path(tmp).write_text(json.dumps({"counts": counts, "items": rows}, indent=1), encoding="utf-8")
    return path, json_path


def result_row(res) -> dict:
    return {"item": res.name, "status": res.status, "seconds": round(res.seconds, 2), "worker": res.worker,
            "message": res.message}


def finish_cases(summary: Path, rows: list, extra: tuple, *, prog: str, done: str, t0: float, where: str,
                 interrupted: bool) -> int:
    """The end of a run of cases (the batch's, replay's): ``rows`` written to ``summary``, the counts printed
    ("N of M case(s) <done> in S s<where>") -> the exit code, 1 when a case failed. A run that Ctrl-C
    interrupted says so after its summary is written and raises KeyboardInterrupt."""
    write_summary(summary, rows, extra)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{prog}: {len(rows) - failed} of {len(rows)} case(s) {done} in {time.perf_counter() - t0:.1f} s{where}"
          f"{f'; {failed} failed' if failed else ''}; summary {summary}", flush=True)
    if interrupted:
        print(f"{prog}: interrupted; the cases not written were cancelled, nothing partial left", file=sys.stderr)
        raise KeyboardInterrupt
    return 1 if failed else 0
