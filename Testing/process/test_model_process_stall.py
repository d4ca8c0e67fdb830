"""A model process that stops answering without exiting (SIGSTOP) is found by its health check within
seconds, killed and replaced; the prompt that was waiting gets its answer from the new process.

Real LiteMedSAM (torch, CPU) in a real ``medsamkit serve`` child, started as the effect starts it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from process_checks import gone

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("fastapi", reason="the model process is a medsamkit server: pip install 'medsamkit[server]'")

REPO = Path(__file__).resolve().parents[2]
PNG = REPO / "Testing" / "Data" / "cju1aqqv02qwz0878a5cyhr67.img.png"  # kvasir polyp, box 213 239 370 396
BOX = [213, 239, 370, 396]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"


def test_a_stopped_model_process_is_detected_in_seconds_and_replaced():
    from medsamkit.backend.transport import HEALTH_INTERVAL_S, HEALTH_TIMEOUT_S, responds
    from medsamkit.backend.process import PROMPT_TIMEOUT_S, ProcessBackend
    from medsamkit.io import read_image

    image = read_image(PNG).array
    backend = ProcessBackend(engine="torch", device="cpu")  # the effect's defaults: 600 s prompt timeout
    try:
        backend.set_image(image)
        before = backend.predict(box=BOX).mask
        first = backend.process.server_pid
        assert responds(backend.process.url)
        os.kill(first, signal.SIGSTOP)
        assert not responds(backend.process.url, timeout=1.0)  # stopped: the check goes unanswered

        gone_after = []
        t0 = time.monotonic()

        def watch_old_pid():
            while not gone(first) and time.monotonic() - t0 < 120:
                time.sleep(0.05)
            gone_after.append(time.monotonic() - t0)

        watcher = threading.Thread(target=watch_old_pid)
        watcher.start()
        again = backend.predict(box=BOX)  # waits on the stopped process until the watchdog replaces it
        total = time.monotonic() - t0
        watcher.join()
        assert gone_after and gone_after[0] < HEALTH_INTERVAL_S + HEALTH_TIMEOUT_S + 5  # seconds, not minutes
        assert total < PROMPT_TIMEOUT_S / 5
        assert np.array_equal(again.mask, before)  # the new process answers the same prompt alike
        assert backend.restarts == 1 and backend.process.server_pid != first
        assert "stopped answering" in backend.last_exit and f"within {HEALTH_TIMEOUT_S:g} s" in backend.last_exit
        assert backend.info().extra["last_exit"] == backend.last_exit  # what a status line can show
    finally:
        backend.close()
        try:
            os.kill(first, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass


def test_the_health_check_gives_up_on_a_server_that_accepts_but_never_answers():
    """A listening socket nobody serves (what a stopped process looks like): no answer within the timeout,
    and the watchdog calls its on_stall once, within interval + timeout."""
    import socket

    from medsamkit.backend.transport import Watchdog, responds

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # connections complete in the kernel; nothing reads them
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        t0 = time.monotonic()
        assert not responds(url, timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 3
        calls = []
        t0 = time.monotonic()
        with Watchdog(url, lambda: calls.append(time.monotonic() - t0), interval=0.2, timeout=0.5) as dog:
            while not calls and time.monotonic() - t0 < 10:
                time.sleep(0.05)
        assert dog.stalled and len(calls) == 1 and calls[0] < 3


def test_a_process_that_died_is_not_reported_as_stalled():
    """A killed process also fails its health check (connection refused); the watchdog then asks whether the
    process exited, and if it did, calls no on_stall: the waiting call reports the exit (signal, exit code)."""
    import socket

    from medsamkit.backend.transport import Watchdog

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed on leaving: nothing listens there, as after a SIGKILL
    url = f"http://127.0.0.1:{port}"
    for exited, stall_expected in ((lambda seconds: True, False), (lambda seconds: False, True)):
        calls = []
        t0 = time.monotonic()
        with Watchdog(url, lambda: calls.append(1), interval=0.1, timeout=0.5, exited=exited) as dog:
            time.sleep(1.0)
        assert dog.stalled is stall_expected and len(calls) == int(stall_expected), (exited, calls)
        assert time.monotonic() - t0 < 5


def test_a_model_process_stopped_mid_propagation_fails_the_job_in_seconds_and_the_next_prompt_replaces_it():
    from medsamkit.backend.process import ModelProcessError, ProcessBackend
    from medsamkit.io import read_image

    image = read_image(CT)
    ys, xs = np.nonzero(read_image(CT_LABEL).array[11])
    box = [float(xs.min() - 3), float(ys.min() - 3), float(xs.max() + 3), float(ys.max() + 3)]
    backend = ProcessBackend(engine="torch", device="cpu")
    first = None
    try:
        backend.set_volume(image.array, normalization="lung", direction=image.direction)
        first = backend.process.server_pid
        running, outcome = threading.Event(), {}

        def progress(done, total, text=""):
            if done >= 1:
                running.set()

        def job():
            try:
                outcome["result"] = backend.propagate(11, 0, box=box, progress=progress)
            except Exception as exc:  # handed to the test below
                outcome["error"] = exc

        worker = threading.Thread(target=job)
        worker.start()
        assert running.wait(180), outcome
        os.kill(first, signal.SIGSTOP)
        t0 = time.monotonic()
        worker.join(120)
        assert not worker.is_alive() and time.monotonic() - t0 < 30  # not the 600 s prompt timeout
        err = outcome.get("error")
        assert isinstance(err, ModelProcessError), outcome
        assert "stopped answering" in str(err) and "nothing was written" in str(err)
        assert gone(first)
        pred = backend.predict(box=box, slice_index=11, axis=0)  # the next prompt: a new process, volume set again
        assert pred.mask.any() and backend.restarts == 1 and "stopped answering" in backend.last_exit
    finally:
        backend.close()
        if first is not None:
            try:
                os.kill(first, signal.SIGKILL)
            except ProcessLookupError:
                pass
