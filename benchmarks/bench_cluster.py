"""Cluster benchmark: N RECIST studies as a plain run vs on a local Ray with 1 and 2 workers (same machine),
the per-task overhead of Ray, and the projected time of 10,000 lesions on K workers.

Studies: crops of the bundled lung CT (pyradiomics lung1, 224 x 224 x 10..14 slices) written as DICOM series +
TID 1500 SR (one lesion each), as in Testing/cluster. Each configuration runs ``medsamkit recist --studies``
(the plain run in a subprocess; the Ray runs through ``--cluster`` on a fresh ``ray.init(num_cpus=K)``; the fast
engine's model is exported into the cache once before, so that no run pays for it), and
its wall time is split into the model load (first study) and the per-study cost of the rest. The per-task
overhead is the round trip of an empty item through the same task wrapper (``call_item``) on a warm worker.

Projection for L lesions on K workers: load + L * (per-lesion cost + overhead) / K; the per-lesion cost
measured here is on a crop; a real lesion (15-45 s on this CPU per the issue) is given as a second line.

    python benchmarks/bench_cluster.py [--studies 6] [--workers 1,2] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "dicom"))
sys.path.insert(0, str(REPO))


def make_studies(root: Path, n: int) -> None:
    from dicom_fixtures import crop_k, sample_case, write_study

    image, label = sample_case()
    for i in range(n):
        k0 = 3 + i % 5
        im, lb = crop_k(image, label, k0, k0 + 10 + i % 3)
        write_study(root / f"s{i:03d}", im, lb, every=2, extra_series=False, seed=i)


def _noop(payload):
    return {}


def run_recist(studies: Path, out: Path, workers: int) -> dict:
    """Wall time of one recist --studies run and the per-study seconds of its summary (Ray) or output."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    if workers == 0:
        proc = subprocess.run([sys.executable, "-m", "medsamkit", "recist", "--studies", str(studies), "--out",
                               str(out), "--quiet"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds = [float(line.split(" in ")[1].split(" s")[0]) for line in proc.stdout.splitlines()
                   if "lesion(s) segmented in" in line and not line.startswith("recist:")]
        return {"wall_s": wall, "study_s": seconds}
    import ray

    from medsamkit.cli.commands import main
    from medsamkit.cluster.runner import call_item

    ray.init(num_cpus=workers, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": env["PYTHONPATH"]}})
    try:
        t_up = time.perf_counter() - t0
        assert main(["recist", "--studies", str(studies), "--out", str(out), "--quiet", "--cluster", "auto"]) == 0
        wall = time.perf_counter() - t0
        summary = json.loads((out / "cluster-summary.json").read_text())
        task = ray.remote(call_item).options(num_cpus=1, max_retries=0)
        ray.get([task.remote(_noop, "warm", None) for _ in range(workers)])
        t1 = time.perf_counter()
        ray.get([task.remote(_noop, str(i), None) for i in range(200)])
        overhead = (time.perf_counter() - t1) / 200 * workers
    finally:
        ray.shutdown()
    return {"wall_s": wall, "ray_start_s": t_up, "study_s": [r["seconds"] for r in summary["items"]],
            "overhead_s": overhead}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=6)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MEDSAMKIT_CACHE_DIR", str(tmp / "cache"))
        make_studies(tmp / "studies", args.studies)
        from argparse import Namespace

        from medsamkit.cli.options import backend_from_options

        t0 = time.perf_counter()  # the fast engine's one-time export into the cache: not part of any run
        backend_from_options(Namespace(backend="local", model=None, checkpoint=None, adapter=None, engine="auto",
                                       device="auto", server_token_file=None, server_timeout=60.0)).close()
        print(f"model ready in the cache in {time.perf_counter() - t0:.1f} s (once)", flush=True)
        for k in [0] + [int(w) for w in args.workers.split(",")]:
            res[k] = run_recist(tmp / "studies", tmp / f"out{k}", k)
            r = res[k]
            rest = sorted(r["study_s"])[: max(1, len(r["study_s"]) - max(k, 1))]  # without the model-loading ones
            r["per_lesion_s"] = sum(rest) / len(rest)
            r["load_s"] = max(r["study_s"]) - r["per_lesion_s"]
            r["lesions_per_min"] = 60.0 * max(k, 1) / r["per_lesion_s"]
            print(f"{'plain' if k == 0 else f'ray x{k}':>8}: {args.studies} studies in {r['wall_s']:.1f} s (model load "
                  f"~{r['load_s']:.1f} s, {r['per_lesion_s']:.2f} s per lesion after it on each worker = "
                  f"{r['lesions_per_min']:.0f} lesions/min"
                  + (f", Ray start {r['ray_start_s']:.1f} s, task overhead {r['overhead_s'] * 1000:.1f} ms)" if k
                     else ")"), flush=True)
    base = res[0]["wall_s"]
    for k in res:
        if k:
            print(f"ray x{k} / plain wall time: {res[k]['wall_s'] / base:.2f}")
    k1 = min(k for k in res if k)
    per, over, load = res[0]["per_lesion_s"], res[k1]["overhead_s"], res[0]["load_s"]
    for label, lesion in (("measured crop", per), ("real lesion (30 s)", 30.0)):
        line = ", ".join(f"K={k}: {(load + 10000 * (lesion + over) / k) / 3600:.1f} h" for k in (1, 8, 32, 128))
        print(f"10,000 lesions, {label} {lesion:.2f} s + overhead {over * 1000:.1f} ms: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
