"""``medsamkit train CONFIG.yaml|flags``: fine-tune a model on your own images and labels.

Every option of :class:`medsamkit.training.config.TrainConfig` is a YAML key and a flag of the
same name (``--batch-size`` for ``batch_size``); flags override the YAML file. The run folder
(``--out``) receives checkpoints, ``metrics.jsonl`` and ``adapter.safetensors`` (see trainer.py).

Stopping: Ctrl-C, SIGTERM or a file named ``STOP`` in the run folder (what the Slicer module
creates) saves a checkpoint at the last optimizer step and exits; ``--resume`` continues exactly
there. Multi-GPU: ``torchrun --nproc_per_node=N -m medsamkit train ...`` with the same arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from ..errors import InputError

HELP = {
    "data": "training data folder or manifest.json (repeatable): shared-format folder, <case>.img.*/<case>.mask.* "
            "pairs, images/ + labels/ folders, or volumes with X.seg.nrrd / X.seg.nii.gz labels",
    "pairs": "an explicit IMAGE LABEL file pair (repeatable)",
    "labels": "train only these label values or segment names (default: every label present)",
    "modality": "modality of cases that do not say (CT, MR, US, XRay, ...), used by --window auto",
    "window": "intensity normalisation exactly as for 'segment': soft-tissue, lung, brain, bone, W,L, percentile, "
              "none, auto",
    "axis": "slice plane of 3D volumes: axial, coronal, sagittal",
    "model": "base model kind (litemedsam, medsam, sam-vit-b, sam-med2d, ...)",
    "checkpoint": "base weights file (default: the kind's bundled weights)",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "parts": "what trains: adapters, decoder, prompt_encoder, encoder, full, clicks (prompt encoder + decoder "
             "attention/tokens/upscaling/IoU head: the small point-capable delta), or a '+' list (e.g. adapters+decoder)",
    "prompt": "simulated prompts: box, points, mixed, or clicks (box only, 1..--points points, or box + points)",
    "box_jitter": "box sides move outward by 0..N pixels (MedSAM: 20)",
    "clicks": "iterative correction clicks per sample (SAM-Med2D: 8; 0 = off)",
    "loss": "dice-bce (MedSAM), focal-dice-iou (SAM-Med2D) or auto",
    "amp": "auto (bf16 autocast on CUDA only), bf16, off",
    "patience": "early stopping after N epochs without validation-Dice gain (0 = off)",
    "out": "run folder (checkpoints, metrics.jsonl, adapter.safetensors)",
    "save_every": "also checkpoint every N optimizer steps (0 = at epoch ends)",
    "max_steps": "stop after N optimizer steps (0 = no limit)",
    "val_data": "validation-only folder with a manifest.json (repeatable): validate by the click protocol "
                "(box, 1/3/5 clicks) and keep the weights with the best mean; never trained on",
    "val_objects": "validate on at most N objects of --val-data, evenly spread (0 = all)",
    "val_every": "also validate and keep the best weights every N optimizer steps (0 = at epoch ends)",
    "embedding_dir": "keep the frozen encoder's embeddings in this folder (float16), reused by resumed/repeated runs",
}


def add_parser(subparsers) -> None:
    from ..training.config import TrainConfig

    p = subparsers.add_parser("train", help="fine-tune adapters / mask decoder / the whole model on your labelled data",
                              description="Fine-tune a model on your own images and labels. Every option is also a "
                                          "key of the YAML config; flags override the config. See docs/training.md.")
    p.add_argument("config", nargs="?", default=None, help="YAML config whose keys are the options below")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = HELP.get(f.name, "see docs/training.md")
        if f.default is not dataclasses.MISSING and f.name not in ("data", "pairs", "val_data"):
            text += f" (default: {f.default})"
        if f.name in ("data", "val_data"):
            p.add_argument(flag, action="append", default=None, metavar="PATH", help=text)
        elif f.name == "pairs":
            p.add_argument("--pair", dest="pairs", nargs=2, action="append", default=None, metavar=("IMAGE", "LABEL"),
                           help=text)
        elif f.name in ("labels", "val_cases"):
            p.add_argument(flag, dest=f.name, nargs="+", default=None, help=text)
        elif isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kind = type(f.default) if f.default is not None and not isinstance(f.default, str) else str
            p.add_argument(flag, dest=f.name, type=kind, default=None, help=text)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the config's out) from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=cmd_train)


def build_config(args):
    """YAML (if any) + flags -> TrainConfig. With --resume and no config, the run folder's config.yaml."""
    from ..training.config import TrainConfig, load_config

    config_path = args.config
    if config_path is None and args.resume:
        if not args.out:
            raise InputError("--resume needs the run folder: --out RUN_FOLDER (or the run's config.yaml).")
        config_path = Path(args.out) / "config.yaml"
        if not config_path.is_file():
            raise InputError(f"{args.out} holds no training run (no config.yaml) to resume.")
    cfg = load_config(config_path) if config_path else TrainConfig()
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None}
    merged = TrainConfig.from_dict({**cfg.to_dict(), **flags})
    merged.resolve_paths(Path.cwd())  # flags are relative to the current folder; YAML paths were resolved already
    return merged.validate()


def cmd_train(args) -> int:
    from ..progress import tqdm_progress
    from ..training.trainer import run_training

    from ..io import check_output_folder

    cfg = build_config(args)
    out = Path(cfg.out)
    check_output_folder("--out", out, [("--data", d) for d in cfg.data] + [("--val-data", d) for d in cfg.val_data]
                        + [("--pair", f) for pair in cfg.pairs for f in pair] + [("--checkpoint", cfg.checkpoint)])
    stop_file = out / "STOP"
    stop_file.unlink(missing_ok=True)  # a stale request from the previous (stopped) run
    state = {"stop": False}

    def on_signal(signum, frame):
        state["stop"] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    progress = None if args.no_progress else tqdm_progress("train")
    try:
        result = run_training(cfg, resume=args.resume, progress=progress,
                              cancel=lambda: state["stop"] or stop_file.exists())
    except KeyboardInterrupt:
        print(f"interrupted; the last checkpoint in {out / 'checkpoints'} is intact — resume with: "
              f"medsamkit train --resume --out {out}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress is not None:
            progress.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports
    before = "n/a" if result.dice_before is None else f"{result.dice_before:.3f}"
    best = "n/a" if result.best_dice is None else f"{result.best_dice:.3f}"
    print(f"{result.status}: {result.step} steps, {result.epoch} epochs; validation Dice {before} before, best {best}")
    if result.adapter:
        print(f"adapter: {result.adapter}  (use: medsamkit segment ... --model {cfg.model} --adapter {result.adapter})")
    if result.status == "stopped":
        print(f"stopped; resume with: medsamkit train --resume --out {out}")
    return 0
