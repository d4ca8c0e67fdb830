"""3D benchmark: DSC / NSD, wall time and peak RSS of the 3D protocols over the dev set.

Runs ``medsamkit bench`` once per protocol in its own process (so each one's peak RSS and wall
time, model loading included, are its own): box, points, markers every 3 / 5 / 10 slices and
propagate. Prints one table with each protocol's mean DSC/NSD over all structures, its mean over
the 3D structures, and the ratio of the 3D mean DSC to the per-slice tight-box protocol (the upper
bound the sparse workflows approach), plus the published figures for context.

    python benchmarks/bench_3d.py DATASET_DIR [--quick] [--device cuda] [--out-dir bench-out]

--quick: at most 2 cases per 2D dataset and only the pyradiomics volumes (lung1, brain1); the
full run adds the BraTS volume (4 labels over up to 61 slices each) and all 80 2D cases.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PUBLISHED = ("CVPR24 'MedSAM on laptop' challenge, box prompts on its own validation/test sets: Swin-LiteMedSAM "
             "(4th place) DSC 0.868 / NSD 0.884 (validation), 0.819 / 0.846 (test); a RepViT entry reported DSC 0.847 / "
             "NSD 0.853 on validation, above the LiteMedSAM baseline; MedSAM paper: ~0.86-0.88 DSC range cited in the issue")
RUNS = [("box", []), ("points", []), ("markers/3", ["--every", "3"]), ("markers/5", ["--every", "5"]),
        ("markers/10", ["--every", "10"]), ("propagate", [])]
QUICK = ["--datasets", "kvasir,ph2,hc18,jsrt,pyradiomics", "--limit", "2"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out-dir", default="bench-3d-out")
    parser.add_argument("--only", default=None, help="comma-separated run names (e.g. markers/5,propagate)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [r for r in RUNS if not args.only or r[0] in args.only.split(",")]
    rows = []
    for name, extra in runs:
        protocol = name.split("/")[0]
        out = out_dir / f"{name.replace('/', '_every')}.json"
        cmd = [sys.executable, "-m", "medsamkit", "bench", args.dataset_dir, "--protocol", protocol,
               "--json", str(out), "--device", args.device, *extra, *(QUICK if args.quick else [])]
        if args.model:
            cmd += ["--model", args.model]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        print("$", " ".join(cmd[1:]), flush=True)
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        print(proc.stdout.rstrip(), flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        rows.append((name, json.loads(out.read_text(encoding="utf-8"))))
    print()
    print(f"{'protocol':<11} {'n':>3} {'DSC':>6} {'NSD':>6} {'n3D':>4} {'DSC3D':>6} {'NSD3D':>6} {'/box3D':>7} "
          f"{'wall s':>7} {'RSS MiB':>8}")
    box3d = None
    for name, res in rows:
        cases = res["cases"]
        c3 = [c for c in cases if c["kind"] == "3d"]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        d3 = mean([c["dsc"] for c in c3])
        if name == "box":
            box3d = d3
        ratio = d3 / box3d if box3d else float("nan")
        print(f"{name:<11} {len(cases):>3} {mean([c['dsc'] for c in cases]):>6.3f} {mean([c['nsd'] for c in cases]):>6.3f} "
              f"{len(c3):>4} {d3:>6.3f} {mean([c['nsd'] for c in c3]):>6.3f} {ratio:>7.2f} {res['wall_s']:>7.0f} "
              f"{res['peak_rss_mb']:>8.0f}")
    print(f"\nFor context (not the same cases): {PUBLISHED}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
