"""Training in a separate process (never inside Slicer's), followed through its metrics file.

:class:`TrainingProcess` runs ``<python> -m medsamkit train <run>/config.yaml --no-progress`` with
the run folder as the only shared state: the child writes ``metrics.jsonl`` (read incrementally by
:meth:`TrainingProcess.poll`) and ``train.log`` (its stdout/stderr); :meth:`stop` creates
``<run>/STOP``, which the child notices between micro-batches, checkpoints and exits, and returns at
once; :meth:`poll` escalates when the child is still running ``grace`` seconds later (terminate), and
again after as long (kill). :meth:`resume` starts ``medsamkit train --resume --out <run>``. Works on
every platform (no signals needed to stop); on Windows the child gets no console window (closing
one would kill the training; ``slicer.util.launchConsoleProcess`` hides its console for that reason).

Design note (rule 4 of the style guide): a GUI polls :meth:`poll` from a timer; nothing here blocks
except :meth:`wait`, used by scripts and tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import InputError
from .config import TrainConfig, dump_yaml
from .metrics_log import read_events, summarize

STOP_GRACE_S = 120.0  # after Stop, seconds the child gets to checkpoint before terminate, then before kill


def no_window_options() -> dict:
    """Popen options that start a child without a console window on Windows (nothing elsewhere)."""
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)}
    return {}


class TrainingProcess:
    """One run folder and (at most) one training process working on it."""

    def __init__(self, run_dir: "str | os.PathLike", python: str | None = None, env: dict | None = None):
        self.run_dir = Path(run_dir)
        self.python = python or sys.executable
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._offset = 0
        self._events: list[dict] = []
        self._log = None
        self._mark = 0
        self._stop_at: float | None = None  # after stop(): monotonic time of the next escalation
        self._grace = STOP_GRACE_S
        self._escalations: list[str] = []   # "terminate", "kill": what poll() had to do after stop()

    # ------------------------------------------------------------------------------------ control
    def start(self, config: "TrainConfig | None" = None, resume: bool = False) -> None:
        """Write ``config`` (its ``out`` is set to the run folder) and launch; or resume the run folder's own."""
        if self.running:
            raise InputError("A training process is already running for this run folder; stop it first.")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / "config.yaml"
        if config is not None:
            config.out = str(self.run_dir.resolve())
            config.validate()
            config_path.write_text(dump_yaml(config), encoding="utf-8")
        elif not config_path.is_file():
            raise InputError(f"{self.run_dir} holds no config.yaml to run.")
        args = [self.python, "-m", "medsamkit", "train", str(config_path), "--no-progress"]
        if resume:
            args.append("--resume")
        env = dict(os.environ if self.env is None else self.env)
        pkg_root = str(Path(__file__).resolve().parents[2])  # the folder holding the medsamkit package
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        if not resume:
            self._offset, self._events = 0, []
        self._mark = len(self._events)  # events before this launch belong to an earlier process
        self._log = open(self.run_dir / "train.log", "ab")
        self._stop_at, self._escalations = None, []
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.run_dir), env=env,
                                     **no_window_options())

    def resume(self) -> None:
        """Continue the run from its last checkpoint in a new process."""
        self.start(None, resume=True)

    def stop(self, grace: float | None = None) -> int | None:
        """Ask the run to checkpoint and exit, and return at once: the exit status if it has ended, else None.

        :meth:`poll` terminates the child if it still runs ``grace`` seconds later and kills it after
        ``grace`` more (default STOP_GRACE_S; scripts: ``stop()`` then :meth:`wait`)."""
        if self.proc is None:
            return None
        grace = STOP_GRACE_S if grace is None else float(grace)
        if self.proc.poll() is None:
            (self.run_dir / "STOP").touch()
            if self._stop_at is None:
                self._stop_at, self._grace = time.monotonic() + grace, grace
        return self.proc.poll()

    def _escalate(self) -> None:
        """After stop(): terminate, then kill, a child that outlives its grace period (called by poll)."""
        if self._stop_at is None or self.proc is None or self.proc.poll() is not None:
            return
        if time.monotonic() < self._stop_at:
            return
        if "terminate" not in self._escalations:
            self.proc.terminate()
            self._escalations.append("terminate")
            self._stop_at = time.monotonic() + self._grace
        else:
            self.proc.kill()
            self._escalations.append("kill")
            self._stop_at = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child ends (scripts and tests; a GUI polls instead); TimeoutExpired after ``timeout``."""
        code = self.proc.wait(timeout)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------------------------ state
    def poll(self) -> dict:
        """New events since the last call, summarised: step, total_steps, epoch, loss, val_dice {epoch: dice},
        best_dice, adapter, status (starting | running | stopping | finished | early-stopped | stopped | failed), message,
        new_events. After :meth:`stop` it also escalates (see there)."""
        self._escalate()
        events, self._offset = read_events(self.run_dir / "metrics.jsonl", self._offset)
        self._events += events
        state = summarize(self._events)
        state["new_events"] = events
        code = None if self.proc is None else self.proc.poll()
        if code is None and self.proc is not None and not any(e.get("event") == "start"
                                                               for e in self._events[self._mark:]):
            state["status"] = "starting"  # the new process has not written its start event yet
        if code is None and (self._stop_at is not None or "kill" in self._escalations):
            state["status"] = "stopping"
        if code is not None and self._escalations and state["status"] in (None, "running"):
            state["status"] = "stopped"
            state["message"] = (f"the training process did not stop within {self._grace:g} s of Stop and was "
                                f"ended ({', '.join(self._escalations)}); resume continues from its last checkpoint")
            return state
        if code is not None and state["status"] in (None, "running"):
            state["status"] = "failed" if code != 0 else (state["status"] or "finished")
            if code != 0:
                state["message"] = f"training process exited with status {code}: {self.log_tail()}"
        return state

    def log_tail(self, lines: int = 5) -> str:
        path = self.run_dir / "train.log"
        if not path.is_file():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def wait_until(self, predicate, timeout: float, interval: float = 0.5) -> dict:
        """Poll until ``predicate(state)`` is true or the process ends; TimeoutError after ``timeout`` s."""
        end = time.monotonic() + timeout
        while True:
            state = self.poll()
            if predicate(state) or not self.running:
                return self.poll() if not self.running else state
            if time.monotonic() > end:
                raise TimeoutError(f"training did not reach the expected state within {timeout:.0f} s: {state}")
            time.sleep(interval)
