"""Training throughput: LiteMedSAM decoder tuning on CPU; SAM-Med2D-layout adapter training and a short real
LiteMedSAM fine-tune on a GPU.

CPU (always): steps/s of decoder-only tuning at 256² with batch 4, embeddings of the frozen encoder
cached (the trainer's default), against one encoder forward at 256² as the reference: "one decoder
training step costs N encoder forwards". Without --quick also one full fine-tuning step (encoder
trains, no cache) for the ratio full/decoder.

GPU (--device cuda): images/s and peak memory of adapter training (adapters + decoder trained, bf16
autocast) for a SAM-Med2D-layout ViT-B at 256 with random weights, batch 8/16/32; then a short real
LiteMedSAM decoder fine-tune on dev-set cases with validation Dice before and after.

    python benchmarks/bench_train.py --quick                 # CPU figures only
    python benchmarks/bench_train.py --device cuda --data ../shared/data
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _batch(n, emb_side, size, device, low):
    boxes = [torch.tensor([20.0, 30.0, 180.0, 200.0], device=device) for _ in range(n)]
    target = torch.zeros(n, 1, low, low, device=device)
    target[:, :, low // 8: low // 2, low // 8: low // 2] = 1
    return {"image": torch.rand(n, 3, size, size, device=device), "target": target, "box": boxes,
            "points": [None] * n, "point_labels": [None] * n, "key": [str(i) for i in range(n)]}


def _time(fn, reps):
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def cpu_decoder(quick: bool) -> dict:
    from medsamkit.models import load_model
    from medsamkit.training.losses import DiceBCELoss
    from medsamkit.training.parts import configure_trainable, set_train_modes
    from medsamkit.training.train_step import TrainStep

    model = load_model("litemedsam", device="cpu", engine="torch")  # trains the network
    net = model.net
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        enc = _time(lambda: net.image_encoder(x), 1 if quick else 3)
    batch = _batch(4, 64, 256, "cpu", 256)
    with torch.no_grad():
        emb = net.image_encoder(batch["image"])
    parts = ("decoder",)
    params = [net.get_parameter(n) for n in configure_trainable(net, parts)]
    set_train_modes(net, parts)
    step = TrainStep(net, DiceBCELoss(), multimask=False)
    opt = torch.optim.AdamW(params, lr=1e-5)

    def one():
        loss = step(batch, emb)
        loss.backward()
        opt.step()
        opt.zero_grad()

    dec = _time(one, 2 if quick else 5)
    out = {"encoder_forward_s": enc, "decoder_step_s_batch4": dec, "decoder_steps_per_s": 1 / dec,
           "decoder_samples_per_s": 4 / dec, "decoder_step_in_encoder_forwards": dec / enc}
    if not quick:
        full = ("encoder", "prompt_encoder", "decoder")
        params = [net.get_parameter(n) for n in configure_trainable(net, full)]
        set_train_modes(net, full)
        opt = torch.optim.AdamW(params, lr=1e-6)

        def full_step():
            loss = step(batch, None)
            loss.backward()
            opt.step()
            opt.zero_grad()

        out["full_step_s_batch4"] = _time(full_step, 2)
        out["full_over_decoder"] = out["full_step_s_batch4"] / dec
    return out


def gpu_adapters(batches, device) -> list:
    from medsamkit.models import sam_med2d
    from medsamkit.training.losses import FocalDiceIoULoss
    from medsamkit.training.parts import configure_trainable, set_train_modes
    from medsamkit.training.train_step import TrainStep

    rows = []
    for bs in batches:
        torch.cuda.empty_cache()
        net = sam_med2d.build().to(device)  # SAM-Med2D's architecture (adapters included), random weights
        parts = ("adapters", "decoder")
        params = [net.get_parameter(n) for n in configure_trainable(net, parts)]
        set_train_modes(net, parts)
        step = TrainStep(net, FocalDiceIoULoss(), multimask=True)
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
        batch = _batch(bs, 16, 256, device, 64)
        torch.cuda.reset_peak_memory_stats(device)

        def one():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step(batch, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(device)

        try:
            sec = _time(one, 10)
            rows.append({"batch": bs, "images_per_s": bs / sec, "step_s": sec,
                         "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30})
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": bs, "images_per_s": None, "step_s": None, "peak_gib": "OOM"})
        del net, opt, step
    return rows


def gpu_finetune(data: Path, device: str, quick: bool) -> dict:
    from medsamkit.training.config import TrainConfig
    from medsamkit.training.trainer import run_training

    folders = [str(data / d) for d in ("jsrt", "hc18")]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(data=folders, labels=[1, 3, 4, 5], parts="decoder", epochs=2 if quick else 6, batch_size=16,
                          lr=1e-4, val_fraction=0.3, device=device, out=str(Path(tmp) / "run"), patience=0)
        t0 = time.perf_counter()
        res = run_training(cfg)
        return {"data": "dev jsrt + hc18 (labels 1,3,4,5), 30% of cases held out", "epochs": cfg.epochs,
                "steps": res.step, "val_dice_before": res.dice_before, "val_dice_best": res.best_dice,
                "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions; no full fine-tuning step")
    ap.add_argument("--data", default=os.environ.get("MEDSAMKIT_DEV_DATA", str(REPO.parent / "shared" / "data")),
                    help="dev set folder (for the GPU fine-tune)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    cpu = cpu_decoder(args.quick)
    results["cpu"] = cpu
    print(f"CPU ({torch.get_num_threads()} threads): LiteMedSAM encoder forward 256²: {cpu['encoder_forward_s']:.2f} s")
    print(f"  decoder tuning, batch 4, cached embeddings: {cpu['decoder_step_s_batch4']:.2f} s/step = "
          f"{cpu['decoder_steps_per_s']:.2f} steps/s = {cpu['decoder_samples_per_s']:.2f} samples/s "
          f"(= {cpu['decoder_step_in_encoder_forwards']:.2f} encoder forwards per step)")
    if "full_step_s_batch4" in cpu:
        print(f"  full fine-tuning step, batch 4: {cpu['full_step_s_batch4']:.2f} s "
              f"({cpu['full_over_decoder']:.1f}x a decoder-only step)")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("GPU section skipped: --device cuda but torch.cuda.is_available() is False")
        else:
            dev = "cuda"
            print(f"GPU: {torch.cuda.get_device_name(0)}")
            results["gpu_adapters"] = gpu_adapters((8, 16, 32), dev)
            for row in results["gpu_adapters"]:
                ips = "OOM" if row["images_per_s"] is None else f"{row['images_per_s']:.1f} images/s"
                peak = row["peak_gib"] if isinstance(row["peak_gib"], str) else f"{row['peak_gib']:.2f} GiB"
                print(f"  SAM-Med2D-layout adapters+decoder, bf16, batch {row['batch']}: {ips}, peak {peak}")
            data = Path(args.data)
            if (data / "manifest.json").is_file():
                ft = gpu_finetune(data, dev, args.quick)
                results["gpu_finetune"] = ft
                print(f"  LiteMedSAM decoder fine-tune ({ft['data']}): {ft['steps']} steps in {ft['seconds']:.0f} s, "
                      f"val Dice {ft['val_dice_before']:.3f} -> {ft['val_dice_best']:.3f}")
            else:
                print(f"  fine-tune skipped: no dev set at {data} (--data)")
    else:
        print("GPU section not run (use --device cuda on a machine with a CUDA GPU)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
