"""Training metrics as JSON lines (``<run>/metrics.jsonl``), TensorBoard when installed, and a tail reader.

One JSON object per line, each with ``event`` and ``time`` (Unix seconds):

- ``start``: ``run``, ``model``, ``parts``, ``train_samples``, ``val_samples``, ``steps_per_epoch``,
  ``total_steps``, ``epochs``, ``device``, ``resumed_from_step``
- ``step``: ``step`` (optimizer steps done), ``epoch``, ``loss``, ``lr``, ``grad_norm``, ``images_per_s``
- ``val``: ``epoch``, ``step``, ``dice`` (mean over validation samples), ``per_case`` {case: dice}
- ``checkpoint``: ``epoch``, ``step``, ``path``; ``adapter``: ``path``, ``dice``
- ``end``: ``status`` (finished | early-stopped | stopped | failed), ``step``, ``best_dice``,
  ``adapter``, ``message``

The Slicer module and ``medsamkit train`` read this file while training runs in another process;
:func:`read_events` tolerates a half-written last line. A resumed run appends (after a ``start``
with ``resumed_from_step``), so readers take the latest value per step.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path


class MetricsWriter:
    """Append events to ``path`` (flushed per line); mirror scalars to TensorBoard when asked and installed."""

    def __init__(self, path: "str | os.PathLike", tensorboard: str = "auto", enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard != "off":
                try:
                    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                except ImportError:
                    SummaryWriter = None
                if SummaryWriter is not None:
                    self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))

    def write(self, event: str, **fields) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **{k: _clean(v) for k, v in fields.items()}}
        if not self.enabled:
            return record
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if self._tb is not None:
            step = fields.get("step", 0)
            if event == "step":
                for key in ("loss", "lr", "grad_norm", "images_per_s"):
                    if fields.get(key) is not None:
                        self._tb.add_scalar(f"train/{key}", fields[key], step)
            elif event == "val" and fields.get("dice") is not None:
                self._tb.add_scalar("val/dice", fields["dice"], step)
            self._tb.flush()
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def read_events(path: "str | os.PathLike", offset: int = 0) -> tuple[list[dict], int]:
    """Events appended since byte ``offset`` -> (events, new offset). A partial last line is left for next time."""
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line damaged by a crash; the next one is intact
    return events, offset + end


def summarize(events: list[dict]) -> dict:
    """Latest state of a run from its events: step, total, epoch, loss, val Dice history, status."""
    out = {"step": 0, "total_steps": None, "epoch": None, "loss": None, "lr": None, "val_dice": {},
           "best_dice": None, "status": None, "message": None, "adapter": None}
    for e in events:
        kind = e.get("event")
        if kind == "start":
            out["total_steps"] = e.get("total_steps")
            out["status"] = "running"
        elif kind == "step":
            out.update(step=e.get("step", 0), epoch=e.get("epoch"), loss=e.get("loss"), lr=e.get("lr"))
        elif kind == "val":
            out["val_dice"][int(e.get("epoch", 0))] = e.get("dice")
            if e.get("dice") is not None and (out["best_dice"] is None or e["dice"] > out["best_dice"]):
                out["best_dice"] = e["dice"]
        elif kind == "adapter":
            out["adapter"] = e.get("path")
        elif kind == "end":
            out.update(status=e.get("status"), message=e.get("message"))
            if e.get("adapter"):
                out["adapter"] = e["adapter"]
    return out
