"""Training as a separate process: a run killed while writing a checkpoint leaves the last good one;
stop / resume / progress through the launcher the Slicer module uses; the adapter registry.

Each test starts one or two real ``medsamkit train`` processes on two small images (2 encodings each).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medsamkit.training.checkpointing import load_checkpoint
from medsamkit.training.config import TrainConfig, dump_yaml

REPO = Path(__file__).resolve().parents[2]


def _config(test_data, out, **kw) -> TrainConfig:
    base = dict(pairs=[[str(test_data / "JPCLN091.img.png"), str(test_data / "JPCLN091.mask.png")],
                       [str(test_data / "043_HC.img.png"), str(test_data / "043_HC.mask.png")]],
                labels=[1, 4], parts="decoder", batch_size=2, augment="none", val_fraction=0, validate_before=False,
                device="cpu", out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_killed_while_writing_a_checkpoint_keeps_the_last_good_one(tmp_path, test_data):
    from medsamkit.cli.commands import main

    run = tmp_path / "run"
    cfg = _config(test_data, run, epochs=2, labels=[4])  # JPCLN091's label 4 only: 1 sample, 1 step per epoch
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent("""
        import io, os, signal, sys
        import torch
        import medsamkit.training.checkpointing as ck
        calls = {"n": 0}
        real_write = ck._write

        def dying_write(payload, tmp):   # the 2nd checkpoint: half the bytes, then SIGKILL
            calls["n"] += 1
            if calls["n"] == 2:
                buf = io.BytesIO()
                torch.save(payload, buf)
                with open(tmp, "wb") as f:
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            real_write(payload, tmp)

        ck._write = dying_write
        from medsamkit.cli.commands import main
        sys.exit(main(["train", sys.argv[1], "--no-progress"]))
    """))
    proc = subprocess.run([sys.executable, str(child), str(tmp_path / "c.yaml")], env=_env(), capture_output=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ckdir = run / "checkpoints"
    partial = [p for p in ckdir.iterdir() if ".partial" in p.name]
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the half-written file, under a temporary name
    state = load_checkpoint(ckdir / "last.pt")  # the epoch-1 checkpoint, complete
    assert state["epoch"] == 1 and state["step"] == 1 and state["batch_in_epoch"] == 0
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]  # it died saving epoch 2

    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert not [p for p in ckdir.iterdir() if ".partial" in p.name]
    final = load_checkpoint(ckdir / "last.pt")
    assert final["epoch"] == 2 and final["step"] == 2
    assert not torch.equal(final["trained_state"]["mask_decoder.iou_token.weight"],
                           state["trained_state"]["mask_decoder.iou_token.weight"])
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "finished"
    assert (run / "adapter.safetensors").is_file()


def test_launcher_progress_stop_resume_and_registry(tmp_path, test_data, monkeypatch):
    from medsamkit.training.adapter_registry import list_adapters, register_adapter, registry_path
    from medsamkit.training.launcher import TrainingProcess

    monkeypatch.setenv("MEDSAMKIT_CONFIG_DIR", str(tmp_path / "config"))
    run = tmp_path / "run"
    proc = TrainingProcess(run, env=_env())
    proc.start(_config(test_data, "ignored", epochs=50, max_steps=8, labels=[4]))  # 1 sample -> 1 step/epoch
    state = proc.wait_until(lambda s: s["step"] >= 1, timeout=600)
    assert state["status"] == "running" and state["total_steps"] == 8
    assert proc.stop() is None  # returns at once; the child checkpoints and exits
    assert proc.wait(timeout=300) == 0
    state = proc.poll()
    assert state["status"] == "stopped" and 1 <= state["step"] < 8
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == state["step"]
    stopped_at = state["step"]

    proc.resume()
    assert proc.poll()["status"] == "starting"
    assert proc.wait(timeout=600) == 0
    state = proc.poll()
    assert state["status"] == "finished" and state["step"] == 8, proc.log_tail()
    steps = [e["step"] for e in proc._events if e["event"] == "step"]
    assert steps == list(range(1, 9)) and steps.index(stopped_at) == stopped_at - 1
    assert state["adapter"] and Path(state["adapter"]).is_file()

    entry = register_adapter(state["adapter"], name="clavicle")
    assert entry["base_kind"] == "litemedsam" and entry["parts"] == ["decoder"]
    assert [e["name"] for e in list_adapters("litemedsam")] == ["clavicle"] and list_adapters("medsam") == []
    assert registry_path().parent == tmp_path / "config"


def test_failed_run_is_reported_with_its_error(tmp_path, test_data):
    from medsamkit.training.launcher import TrainingProcess

    proc = TrainingProcess(tmp_path / "run", env=_env())
    proc.start(_config(test_data, "x", epochs=1, model="no-such-model"))
    proc.wait(timeout=300)
    state = proc.poll()
    assert state["status"] == "failed" and "Unknown model kind 'no-such-model'" in state["message"]
