"""Helpers for the server tests: ``medsamkit serve`` as a real subprocess on 127.0.0.1.

The server binds its socket itself with ``--port 0`` and prints the port it got, so there is no
free-port race; a restart reuses that port. Loading LiteMedSAM takes ~5-8 s on the CI machine,
so each test module starts one server (module-scoped fixture) and stops it at the end.
Only loopback addresses are ever used.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "Testing" / "Data"
START_TIMEOUT_S = 90.0  # model load on a loaded 2-core machine; normally 5-8 s


class ServerProcess:
    """One ``medsamkit serve`` subprocess; logs go to a file under the test's tmp dir."""

    def __init__(self, log_dir: Path, token: str | None = None, extra_args=()):
        self.log_dir = Path(log_dir)
        self.token = token
        self.extra_args = list(extra_args)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        # --engine torch: the same engine as the tests' local reference model (lite_model), so remote
        # results can be compared bit for bit; ONNX Runtime agrees only to ~1e-4 in the logits.
        args = [sys.executable, "-m", "medsamkit", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--device", "cpu", "--engine", "torch", *self.extra_args]
        if self.token:
            token_file = self.log_dir / "token.txt"
            token_file.write_text(self.token + "\n")
            args += ["--token-file", str(token_file)]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.starts += 1
        log_path = self.log_dir / f"server{self.starts}.log"
        log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.log_dir))
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"medsamkit serve exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"medsamkit serve did not start within {START_TIMEOUT_S:g} s:\n{text[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_bytes(self) -> int:
        psutil = pytest.importorskip("psutil", reason="psutil measures the server's memory")
        return psutil.Process(self.pid).memory_info().rss


def read_2d_cases(names: list[str]) -> list[dict]:
    """Test cases from Testing/Data: image array, ground-truth mask of label 1 and its XYXY box."""
    import json

    from PIL import Image

    manifest = json.loads((TEST_DATA / "manifest.json").read_text(encoding="utf-8"))
    by_id = {c["case_id"]: c for c in manifest["cases"]}
    cases = []
    for name in names:
        c = by_id[name]
        image = np.array(Image.open(TEST_DATA / c["image"]))
        gt = np.array(Image.open(TEST_DATA / c["mask"])) == 1
        cases.append({"name": name, "image": image, "gt": gt, "box": [float(v) for v in c["label_bboxes_xyxy"]["1"]]})
    return cases


def centre_point(gt: np.ndarray) -> list[float]:
    """A foreground pixel near the centroid of the ground truth (a reader's click), XY."""
    ys, xs = np.nonzero(gt)
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return [float(xs[i]), float(ys[i])]


def inside_points(gt: np.ndarray, n: int = 3, seed: int = 0) -> list[list[float]]:
    """The centre point plus n - 1 random foreground pixels (XY): a reader's positive clicks.

    LiteMedSAM was trained with boxes; one click alone often gives an empty mask, three do not.
    """
    ys, xs = np.nonzero(gt)
    picks = np.random.default_rng(seed).choice(len(xs), n - 1, replace=False)
    return [centre_point(gt)] + [[float(xs[i]), float(ys[i])] for i in picks]
