"""Headless batch: the same case with ``--engine torch`` and with the default ``--engine auto``.

The batch reaches the model through open_backend with the CLI's defaults, so with ONNX Runtime installed
it runs the ONNX engine. This runs ``medsamkit/cli/batch.py`` as a script (a fresh process per run, as a user does),
alternating the two engines, and compares the per-case time the batch itself reports (model loading
excluded) and the written voxels.

Case: brain1 from Testing/Data (BraTS-like FLAIR, lesion marked on every slice by simulated reader
lines). Usage: python benchmarks/bench_batch.py [--rounds N] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "Testing" / "Data"


def run(engine: str, volume: Path, markers: Path, out: Path, env: dict) -> float:
    proc = subprocess.run([sys.executable, str(REPO / "medsamkit" / "cli" / "batch.py"), "--volume", str(volume),
                           "--markers", str(markers), "--out", str(out), "--quiet", "--engine", engine],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"batch failed ({engine}):\n{proc.stderr[-2000:]}")
    m = re.search(r"ok \((\d+\.\d+) s\)", proc.stdout)
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import write_markers
    from medsamkit.simulated_reader import simulate_markers

    tmp = Path(tempfile.mkdtemp(prefix="medsamkit-bench-batch-"))
    volume, label = DATA / "brain1.img.nii.gz", DATA / "brain1.seg.nii.gz"
    ref = read_image(label)
    markers = write_markers(simulate_markers(ref.array > 0, VolumeGeometry.from_image(ref), 0, every=1),
                            tmp / "brain1.mrk.json")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MEDSAMKIT_DEVICE="cpu", MEDSAMKIT_CACHE_DIR=str(tmp / "cache"))
    run("auto", volume, markers, tmp / "warm.seg.nrrd", env)  # exports the ONNX graphs once (cached)
    times = {"torch": [], "auto": []}
    for r in range(args.rounds):
        for engine in ("torch", "auto"):
            times[engine].append(run(engine, volume, markers, tmp / f"{engine}.seg.nrrd", env))
        print(f"round {r + 1}: torch {times['torch'][-1]:.1f} s, auto {times['auto'][-1]:.1f} s "
              f"[load {os.getloadavg()[0]:.1f}]", flush=True)
    a, b = (read_image(tmp / f"{e}.seg.nrrd").array > 0 for e in ("torch", "auto"))
    torch_s, auto_s = statistics.median(times["torch"]), statistics.median(times["auto"])
    result = {"case": "brain1 (Testing/Data), lines on every lesion slice", "rounds": args.rounds,
              "case_s": times, "median_torch_s": torch_s, "median_auto_s": auto_s, "ratio": torch_s / auto_s,
              "voxels_torch": int(a.sum()), "voxels_auto": int(b.sum()), "voxels_differing": int((a != b).sum()),
              "load_at_end": os.getloadavg()[0]}
    print(f"batch case time, median of {args.rounds}: torch {torch_s:.1f} s, auto (ONNX) {auto_s:.1f} s, "
          f"x{torch_s / auto_s:.2f}; voxels {int(a.sum())} vs {int(b.sum())}, {int((a != b).sum())} differ")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
