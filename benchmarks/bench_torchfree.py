"""Torch-free CPU path vs the torch-importing path, measured in one run (benchmarks/RESULTS.md).

Run with the full environment's Python (torch installed), naming the torch-free one::

    python benchmarks/bench_torchfree.py --cpu-python /path/to/cpu-venv/bin/python \
        [--baseline-pythonpath /path/to/old/checkout] [--dev-data ../shared/data] [--repeat 3]

1. one-shot ``medsamkit segment`` on a 2D PNG (wall time of the whole process, median of --repeat):
   the torch-free venv (auto engine) against this environment with ``--engine onnx`` (the code at
   --baseline-pythonpath, e.g. a checkout of the previous release: today's torch-importing ONNX path)
   and with ``--engine torch``;
2. ``medsamkit serve`` time to ready (the ready file written) and the model process's peak RSS
   (VmHWM) after one image and one box, for the same interpreters;
3. installed size of each environment's site-packages;
4. on the 2D dev slices (--dev-data manifest): masks and logits of the torch-free model vs the torch
   engine, and the encoder's median time for both (one process, interleaved).
Prints a JSON document; absolute times depend on the machine's load, compare within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PNG = REPO / "Testing" / "Data" / "043_HC.img.png"
BOX = ["123", "85", "357", "314"]


def _env(pythonpath: str | None, cache: str) -> dict:
    env = dict(os.environ, MEDSAMKIT_CACHE_DIR=cache)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def one_shot(python: str, pythonpath: str | None, engine: str, cache: str, repeat: int) -> dict:
    import resource

    times, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-m", "medsamkit", "segment", str(PNG), "--box", *BOX, "--engine", engine,
               "--out", str(Path(tmp) / "m.png")]
        # cwd: a folder without medsamkit (python -m puts the working directory first on sys.path)
        subprocess.run(cmd, env=_env(pythonpath, cache), check=True, capture_output=True, cwd=tmp)  # warm: cached
        for _ in range(repeat):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, env=_env(pythonpath, cache), check=True, capture_output=True, cwd=tmp)
            times.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times],
            "median_cpu_s": round(statistics.median(cpu), 2)}


def serve(python: str, pythonpath: str | None, engine: str, cache: str) -> dict:
    import psutil

    from medsamkit.backend import open_backend
    from medsamkit.io import read_image

    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, "-m", "medsamkit", "serve", "--port", "0", "--ready-file", str(ready),
                                 "--engine", engine], env=_env(pythonpath, cache), cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ready.exists():
                if proc.poll() is not None or time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"serve did not start ({python}, {engine})")
                time.sleep(0.02)
            ready_s = time.perf_counter() - t0
            ready_cpu = sum(psutil.Process(proc.pid).cpu_times()[:2])
            info = json.loads(ready.read_text())
            with open_backend(info["url"]) as backend:
                t1 = time.perf_counter()
                backend.set_image(read_image(PNG).array)
                backend.predict(box=[int(v) for v in BOX])
                first_box_s = time.perf_counter() - t1
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM"))
        finally:
            proc.terminate()
            proc.wait(30)
    return {"ready_s": round(ready_s, 2), "ready_cpu_s": round(ready_cpu, 2), "first_box_s": round(first_box_s, 2), "peak_rss_mb": round(hwm / 1024),
            "engine": info["engine"]}


def site_size_mb(python: str) -> int:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    total = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file() and not f.is_symlink())
    return round(total / 2**20)


def compare_dev(dev: Path, limit: int | None) -> dict:
    """Torch-free model vs the torch engine on every 2D dev slice: one box per label (its bounding box)."""
    import numpy as np
    from PIL import Image

    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor

    free, ref = load_model("litemedsam", device="cpu", engine="onnx"), load_model("litemedsam", device="cpu",
                                                                                   engine="torch")
    assert free.reference is None
    manifest = json.loads((dev / "manifest.json").read_text())
    cases = [c for c in manifest["cases"] if c["kind"] == "2d"][:limit]
    res = {"slices": 0, "prompts": 0, "masks_identical": 0, "pixels_differing": 0, "max_logit_diff": 0.0,
           "max_abs_torch_logit_at_a_differing_pixel": 0.0, "encode_s_torch": [], "encode_s_onnx": []}
    for case in cases:
        img = np.array(Image.open(dev / case["image"]))
        a, b = Predictor(free), Predictor(ref)
        for pred, key in ((b, "encode_s_torch"), (a, "encode_s_onnx")):  # set_image: preprocessing + encoder
            t0 = time.perf_counter()
            pred.set_image(img)
            res[key].append(time.perf_counter() - t0)
        res["slices"] += 1
        for box in case["label_bboxes_xyxy"].values():
            p, q = a.predict(box=box), b.predict(box=box)
            diff = p.mask != q.mask
            res["prompts"] += 1
            res["masks_identical"] += int(not diff.any())
            res["pixels_differing"] += int(diff.sum())
            res["max_logit_diff"] = max(res["max_logit_diff"], float(np.abs(p.logits - q.logits).max()))
            if diff.any():
                res["max_abs_torch_logit_at_a_differing_pixel"] = max(
                    res["max_abs_torch_logit_at_a_differing_pixel"], float(np.abs(q.logits[diff]).max()))
    for key in ("encode_s_torch", "encode_s_onnx"):
        res[key] = round(statistics.median(res[key]), 3)
    res["encode_speedup"] = round(res["encode_s_torch"] / res["encode_s_onnx"], 2)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-python", required=True, help="Python of a venv made with 'pip install .' (no extras)")
    ap.add_argument("--baseline-pythonpath", default=None,
                    help="checkout whose medsamkit is today's torch-importing path (default: this one)")
    ap.add_argument("--dev-data", default=None, help="folder with the dev set's manifest.json (masks + encode)")
    ap.add_argument("--dev-limit", type=int, default=None, help="at most this many 2D dev slices")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["oneshot", "serve", "size", "dev"])
    ap.add_argument("--no-torch-engine", action="store_true", help="leave out the --engine torch rows")
    args = ap.parse_args(argv)
    out = {"machine": f"{os.cpu_count()} cores", "png": PNG.name}
    with tempfile.TemporaryDirectory() as cache:
        here = str(REPO)
        base = args.baseline_pythonpath or here
        paths = {"torch-free (cpu venv, auto)": (args.cpu_python, None, "auto"),
                 "baseline --engine onnx (imports torch)": (sys.executable, base, "onnx"),
                 "--engine torch": (sys.executable, here, "torch")}
        if args.no_torch_engine:
            paths.pop("--engine torch")
        if "oneshot" not in args.skip:
            out["segment_one_shot"] = {k: one_shot(p, pp, e, cache, args.repeat) for k, (p, pp, e) in paths.items()}
        if "serve" not in args.skip:
            out["serve"] = {k: serve(p, pp, e, cache) for k, (p, pp, e) in paths.items()}
    if "size" not in args.skip:
        out["site_packages_mb"] = {"cpu venv": site_size_mb(args.cpu_python), "full venv": site_size_mb(sys.executable)}
    if args.dev_data and "dev" not in args.skip:
        out["dev"] = compare_dev(Path(args.dev_data), args.dev_limit)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
