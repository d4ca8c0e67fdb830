"""The model in its own process: what "local" means in the Slicer effect.

:class:`ModelProcess` starts ``python -m medsamkit serve`` on 127.0.0.1 (``--port 0``) with a random
token in a private file, ``--ready-file`` (the server writes its URL there once the model is loaded)
and ``--parent-pid`` (it exits within a second once this process is gone, even after a kill -9).
Inside Slicer the interpreter is ``PythonSlicer`` (as ``slicer.util._executePythonModule`` uses).

:class:`ProcessBackend` is the Backend on such a process, through the protocol of a remote server
(:class:`~medsamkit.backend.remote.RemoteBackend`). When the process dies (a crash, CUDA out of
memory, a kill) the next call starts a new one, sets the last image/volume again and carries on; a
refinement whose logits died with it is recomputed from its prompts (the model is deterministic). A
propagation or marker run in flight raises :class:`ModelProcessError` (how it ended, the end of its
log, "nothing was written"); a single prompt whose connection broke is tried once more. A process
that stops answering without exiting is found by a health check while a call waits
(:class:`~medsamkit.backend.transport.Watchdog`), killed and replaced the same way.

Why a process and not a thread: Slicer's main thread holds the GIL inside the Qt event loop, so a
Python worker thread in Slicer's process advances only while main-thread Python runs. Here the
Slicer side only waits on a socket, and this module never imports torch.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from ..errors import DependencyError
from ..progress import Cancelled
from .base import Backend, BackendInfo, ImageInfo
from .errors import RemoteError
from .transport import EXIT_GRACE_S, HEALTH_INTERVAL_S, HEALTH_TIMEOUT_S, Watchdog, refused

log = logging.getLogger("medsamkit.process")

START_TIMEOUT_S = 300.0   # first start may export the ONNX graphs (~10 s) and load a large model on CPU
PROMPT_TIMEOUT_S = 600.0  # a SAM ViT-H encoding on a slow CPU; a dead process is noticed at once anyway
LOG_TAIL_CHARS = 1500
LONG_JOBS = ("propagate", "segment_plan")  # a refused progress poll there means it died during the job


class ModelProcessError(RemoteError):
    """The model process could not start, or stopped while working (the message says why and what to do)."""


def python_executable() -> str:
    """The Python that runs ``-m medsamkit``: this interpreter, or Slicer's PythonSlicer inside Slicer."""
    exe = sys.executable or ""
    if Path(exe).name.lower().startswith(("python", "pythonslicer")):
        return exe
    # Inside Slicer sys.executable is the application; PythonSlicer is on its PATH (Slicer's own
    # slicer.util._executePythonModule finds it the same way), else beside the executable.
    found = shutil.which("PythonSlicer")
    if found:
        return found
    beside = Path(exe).with_name("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    if beside.is_file():
        return str(beside)
    raise DependencyError(f"Cannot find a Python to run the model process ({exe} is not Python and PythonSlicer is "
                          "not on PATH). Reinstall Slicer, or use a MedSAM server (Backend: http://host:port).")


def model_arguments(model=None, checkpoint=None, adapter=None, engine="auto", device="auto") -> list[str]:
    """``medsamkit serve`` options for a model choice (the CLI's names and defaults)."""
    args = ["--engine", engine or "auto", "--device", device or "auto"]
    for flag, value in (("--model", model), ("--checkpoint", checkpoint), ("--adapter", adapter)):
        if value:
            args += [flag, os.fspath(value)]
    return args


_LIVE: "weakref.WeakSet[ModelProcess]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # Slicer (or any program) exits: stop the model processes it started
    for proc in list(_LIVE):
        proc.stop()


class ModelProcess:
    """One ``medsamkit serve`` child on loopback. ``start()`` -> URL; ``alive``; ``stop()``.

    model_args: ``medsamkit serve`` model options (:func:`model_arguments`). python: the interpreter
    (default :func:`python_executable`). Thread-safe: start/stop may come from different threads.
    """

    def __init__(self, model_args=(), python: str | None = None, start_timeout: float = START_TIMEOUT_S,
                 extra_args=()):
        self.model_args = list(model_args)
        self.extra_args = list(extra_args)
        self.python = python
        self.start_timeout = float(start_timeout)
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.server_pid: int | None = None   # the Python running the server (PythonSlicer may be a launcher)
        self.folder: Path | None = None
        self.starts = 0
        self._lock = threading.RLock()

    @property
    def token_file(self) -> Path:
        return self.folder / "token.txt"

    @property
    def log_file(self) -> Path:
        return self.folder / "model-process.log"

    @property
    def alive(self) -> bool:
        proc = self.proc
        return proc is not None and proc.poll() is None and self.url is not None

    def start(self, progress=None, cancel=None) -> str:
        """Start the process (if not running) and wait until it serves; returns its URL.

        progress(done, total, text) is told while waiting; cancel() -> True stops the start (Cancelled).
        Raises ModelProcessError (with the end of its log) if it exits or does not answer in time.
        """
        with self._lock:
            if self.alive:
                return self.url
            self._discard()
            self.folder = Path(tempfile.mkdtemp(prefix="medsamkit-model-"))  # 0700: only this user
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(32))
            ready = self.folder / "ready.json"
            cmd = [self.python or python_executable(), "-m", "medsamkit", "serve", "--host", "127.0.0.1", "--port",
                   "0", "--token-file", str(self.token_file), "--ready-file", str(ready), "--parent-pid",
                   str(os.getpid()), *self.model_args, *self.extra_args]
            self.starts += 1
            with open(self.log_file, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=_child_environment(), cwd=str(self.folder), **_detached())
            _LIVE.add(self)
            t0 = time.monotonic()
            while not ready.is_file():
                if self.proc.poll() is not None:
                    raise ModelProcessError(f"The model process did not start ({self.exit_description()}).\n"
                                            f"{self.log_tail()}")
                if cancel is not None and cancel():
                    self.stop()
                    raise Cancelled("Cancelled while the model process was starting.")
                waited = time.monotonic() - t0
                if waited > self.start_timeout:
                    self.stop()
                    raise ModelProcessError(f"The model process did not answer within {self.start_timeout:g} s; "
                                            f"it was stopped. Its log:\n{self.log_tail()}")
                if progress is not None:
                    progress(0, 0, f"Starting the model process ({waited:.0f} s)...")
                time.sleep(0.05)
            info = json.loads(ready.read_text(encoding="utf-8"))
            self.url, self.server_pid = str(info["url"]), int(info["pid"])
            return self.url

    def exited_within(self, seconds: float) -> bool:
        """True if the process has exited or does so within ``seconds`` (a refused connection may mean
        it is being torn down: its threads die before its exit status can be collected)."""
        proc = self.proc
        if proc is None:
            return True
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def exit_description(self) -> str:
        """'exit code 1' / 'killed by signal 9 (SIGKILL)' / 'running'."""
        code = None if self.proc is None else self.proc.poll()
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def log_tail(self) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except (OSError, TypeError):
            return "(no log)"
        return text[-LOG_TAIL_CHARS:].strip() or "(empty log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (terminate, then kill after ``timeout``) and delete its folder. Idempotent."""
        with self._lock:
            proc = self.proc
            if proc is not None and proc.poll() is None:
                _signal(proc, self.server_pid, terminate=True)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal(proc, self.server_pid, terminate=False)
                    proc.wait(timeout)
            _LIVE.discard(self)
            self._discard()

    def kill(self) -> None:
        """SIGKILL at once (a stopped or deadlocked process ignores SIGTERM); the next start() replaces it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            _signal(proc, self.server_pid, terminate=False)
            self.exited_within(EXIT_GRACE_S)

    def _discard(self) -> None:
        """Forget a stopped process: its URL, and its folder (token, ready file; the log of a crash is kept
        until the next start so its message can quote it)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.url = self.server_pid = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _child_environment() -> dict:
    """This environment, with the folder holding this medsamkit first on PYTHONPATH (inside Slicer
    medsamkit sits beside the extension's modules, which PythonSlicer does not search by itself)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _detached() -> dict:
    """Own process group (POSIX) / no console window (Windows, as slicer.util.launchConsoleProcess)."""
    if os.name == "nt":
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        return {"startupinfo": info,
                "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _signal(proc: subprocess.Popen, server_pid: int | None, terminate: bool) -> None:
    """Terminate (or kill) the process and, when PythonSlicer is a launcher, the server Python it started."""
    if os.name == "nt":
        for pid in {proc.pid, server_pid} - {None}:
            try:
                os.kill(pid, signal.SIGTERM)  # TerminateProcess on Windows
            except OSError:
                pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM if terminate else signal.SIGKILL)  # its own group (start_new_session)
    except OSError:
        pass


class ProcessBackend(Backend):
    """The Backend on a model process this object starts (see the module docstring).

    model, checkpoint, adapter, engine, device: the model options of ``medsamkit serve`` (the CLI's
    defaults). timeout: seconds for one answer. One worker thread drives it, as every Backend.
    """

    def __init__(self, model=None, checkpoint=None, adapter=None, engine: str | None = "auto",
                 device: str | None = "auto", python: str | None = None, timeout: float = PROMPT_TIMEOUT_S,
                 start_timeout: float = START_TIMEOUT_S, extra_args=(), health_timeout: float = HEALTH_TIMEOUT_S,
                 health_interval: float = HEALTH_INTERVAL_S):
        self.process = ModelProcess(model_arguments(model, checkpoint, adapter, engine, device), python,
                                    start_timeout, extra_args)
        self.timeout = float(timeout)
        self.health_timeout, self.health_interval = float(health_timeout), float(health_interval)
        self._stall: str | None = None          # why the process was killed as unresponsive (until restarted)
        self._remote = None
        self._image_call: tuple | None = None   # ("set_volume"/"set_image", args, kwargs): replayed on restart
        self.restarts = 0
        self.last_exit: str | None = None       # how the previous process ended, for the status line

    # -- process -----------------------------------------------------------------------------------
    def start(self, progress=None, cancel=None):
        """Start (or restart) the model process now; returns the RemoteBackend on it."""
        if self._remote is not None and self.process.alive:
            return self._remote
        if self._remote is not None:  # it died since the last call
            self.last_exit, self._stall = self._stall or self.process.exit_description(), None
            self.restarts += 1
            self._remote.close()
            self._remote = None
            if progress is not None:
                progress(0, 0, f"The model process had stopped ({self.last_exit}); restarting it...")
        from .remote import RemoteBackend

        url = self.process.start(progress, cancel)
        remote = RemoteBackend(url, token_file=self.process.token_file, timeout=self.timeout,
                               upload_timeout=max(self.timeout, 300.0), retries=1)
        if self._image_call is not None:
            name, args, kwargs = self._image_call
            getattr(remote, name)(*args, **kwargs)
        self._remote = remote
        return remote

    @property
    def alive(self) -> bool:
        return self.process.alive

    def _call(self, name: str, *args, **kwargs):
        return self._run(name, lambda remote: getattr(remote, name)(*args, **kwargs),
                         kwargs.get("progress"), kwargs.get("cancel"))

    def _run(self, name: str, call, progress=None, cancel=None):
        """``call(remote)`` on the running process; a process found dead, or not answering its health check
        while the call waits, is (killed and) restarted first."""
        for attempt in range(2):
            remote = self.start(progress, cancel)
            try:
                with Watchdog(self.process.url, self._stalled, self.health_interval, self.health_timeout,
                              exited=self.process.exited_within) as dog:
                    return call(remote)
            except (RemoteError, OSError) as exc:
                if isinstance(exc, ModelProcessError) or not self.process.exited_within(EXIT_GRACE_S):
                    raise
                if attempt == 0 and name not in LONG_JOBS and (refused(exc) or dog.stalled):
                    if dog.stalled and progress is not None:
                        progress(0, 0, f"{self._stall}; starting a new one...")
                    continue  # it died (or hung) before answering this request: restart, once
                if dog.stalled:
                    raise ModelProcessError(
                        f"{self._stall}; nothing was written. A new one starts with your next prompt. If this "
                        f"repeats, choose a smaller model or the CPU (Device: cpu). End of its log:\n"
                        f"{self.process.log_tail()}") from exc
                raise ModelProcessError(
                    f"The model process stopped while working ({self.process.exit_description()}); nothing was "
                    "written. It starts again with your next prompt. If this repeats, choose a smaller model or "
                    f"the CPU (Device: cpu). End of its log:\n{self.process.log_tail()}") from exc

    def _stalled(self) -> None:
        """The watchdog's verdict: the process did not answer its health check; kill it (the waiting call fails)."""
        self._stall = (f"The model process stopped answering (pid {self.process.server_pid}: no reply to a health "
                       f"check within {self.health_timeout:g} s); it was stopped")
        log.warning(self._stall)
        self.process.kill()

    # -- Backend interface -------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        info = self._call("info")
        extra = dict(info.extra, process=True, restarts=self.restarts, last_exit=self.last_exit)
        return BackendInfo(info.kind, info.device, info.package_version, remote=False, url=info.url,
                           api_version=info.api_version, extra=extra)

    def set_image(self, image, normalization="auto", modality=None) -> ImageInfo:
        out = self._call("set_image", image, normalization, modality)
        self._image_call = ("set_image", (image, normalization, modality), {})
        return out

    def set_volume(self, volume, normalization="auto", modality=None, direction=None) -> ImageInfo:
        out = self._call("set_volume", volume, normalization, modality, direction)
        self._image_call = ("set_volume", (volume, normalization, modality, direction), {})
        return out

    def predict(self, box=None, points=None, point_labels=None, mask_input=None, multimask_output=None,
                slice_index=None, axis=0):
        return self._run("predict", lambda remote: remote.predict(
            box=box, points=points, point_labels=point_labels, mask_input=remote.adopt(mask_input),
            multimask_output=multimask_output, slice_index=slice_index, axis=axis))

    def propagate(self, slice_index, axis=0, box=None, points=None, point_labels=None, progress=None, cancel=None,
                  margin_px=None, score_threshold=None, min_area=None, max_slices=None):
        return self._call("propagate", slice_index, axis, box=box, points=points, point_labels=point_labels,
                          progress=progress, cancel=cancel, margin_px=margin_px, score_threshold=score_threshold,
                          min_area=min_area, max_slices=max_slices)

    def segment_plan(self, plan, refine=False, progress=None, cancel=None):
        return self._call("segment_plan", plan, refine=refine, progress=progress, cancel=cancel)

    def prefetch(self, slice_index: int, axis=0) -> bool:
        """Ask the running process to encode a slice in the background (never starts or restarts it)."""
        if self._remote is None or not self.process.alive:
            return False
        return self._remote.prefetch(slice_index, axis)

    def stats(self) -> dict:
        """The model process's /stats (encoder calls, prefetch counts, sessions)."""
        return self._call("stats")

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        self._image_call = None
        self.process.stop()
