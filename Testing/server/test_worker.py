"""BackendWorker: calls run in order on one thread, results/errors come back, cancel works."""
from __future__ import annotations

import threading
import time

import pytest

from medsamkit.backend.worker import BackendWorker
from medsamkit.errors import InputError
from medsamkit.progress import Cancelled, check_cancel, report


@pytest.fixture()
def worker():
    w = BackendWorker()
    yield w
    w.shutdown(wait=True, timeout=5)


def test_runs_in_order_on_one_thread(worker):
    seen = []
    jobs = [worker.submit(lambda i=i: seen.append((i, threading.current_thread().name)) or i) for i in range(5)]
    assert [j.result(timeout=5) for j in jobs] == list(range(5))
    assert [i for i, _ in seen] == list(range(5))
    assert {name for _, name in seen} == {"medsamkit-worker"}  # never the caller's thread


def test_errors_are_delivered_not_lost(worker):
    def bad():
        raise InputError("The box lies outside the image.")

    job = worker.submit(bad)
    with pytest.raises(InputError, match="outside"):
        job.result(timeout=5)
    assert worker.submit(lambda: 7).result(timeout=5) == 7  # the worker survives


def test_progress_and_cancel_of_a_running_job(worker):
    started = threading.Event()

    def long_job(n, progress=None, cancel=None):
        for i in range(n):
            report(progress, i, n, f"slice {i}")
            started.set()
            check_cancel(cancel)
            time.sleep(0.01)
        return "finished"

    job = worker.submit(long_job, 10_000)
    assert started.wait(5)
    time.sleep(0.05)
    done, total, text = job.progress
    assert total == 10_000 and 0 <= done < total and text.startswith("slice")
    assert job.cancel() is False  # already running: asked to stop, stops at the next check
    with pytest.raises(Cancelled):
        job.result(timeout=5)
    assert not worker.busy


def test_replace_key_drops_queued_clicks(worker):
    gate = threading.Event()
    blocker = worker.submit(gate.wait, 5)
    clicks = [worker.submit(lambda i=i: i, replace_key="click") for i in range(4)]
    gate.set()
    assert blocker.result(timeout=5) is True
    assert clicks[-1].result(timeout=5) == 3
    for job in clicks[:-1]:
        with pytest.raises(Cancelled):
            job.result(timeout=5)


def test_shutdown_cancels_queued_jobs():
    w = BackendWorker()
    gate, running = threading.Event(), threading.Event()
    first = w.submit(lambda: running.set() or gate.wait(5))
    queued = w.submit(lambda: "never")
    assert running.wait(5)
    w.shutdown(wait=False)
    gate.set()
    assert first.result(timeout=5) is True
    with pytest.raises(Cancelled):
        queued.result(timeout=5)
    with pytest.raises(RuntimeError, match="shut down"):
        w.submit(lambda: 1)
