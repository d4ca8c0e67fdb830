"""medsamkit.mrml.session.Worker.pending / wait: what the effect's timer relies on (no Qt here)."""
from __future__ import annotations

import threading
import time

from medsamkit.mrml.session import Worker


def test_wait_returns_when_a_job_ends_and_times_out_while_it_runs():
    worker = Worker()
    release = threading.Event()
    try:
        assert not worker.pending and worker.wait(0.01)  # nothing pending: nothing to wait for
        job = worker.submit(lambda progress=None, cancel=None: release.wait(10) and 42)
        background = worker.submit_background(lambda progress=None, cancel=None: 7)
        assert worker.pending and worker.current is job and worker.background is background
        t0 = time.monotonic()
        assert not worker.wait(0.05)  # the prompt still runs (the prefetch queues behind it)
        assert 0.04 <= time.monotonic() - t0 < 1.0
        release.set()
        assert worker.wait(5.0) and job.result() == 42
        deadline = time.monotonic() + 5
        while worker.pending and time.monotonic() < deadline:
            worker.wait(0.1)
        assert not worker.pending and background.result() == 7
    finally:
        release.set()
        worker.shutdown()
