"""Timing the effect while the main thread holds the GIL the way Slicer's Qt event loop does.

Inside Slicer the main thread keeps the GIL while Qt's event loop runs in C++ (no PyEval_SaveThread
around it in Slicer 5.10 or its CTK); Python on other threads advances only while a Python slot on the
main thread releases it. ``strict_qt.run_event_loop`` models the loop in real time: timers fire when
due, and between them the loop waits inside C (:func:`hold`: ctypes.PyDLL calls keep the GIL) or, for
the reference, with the GIL free (:func:`free`).

Used by test_gil_starvation.py and benchmarks/bench_gil.py: a box on an already-encoded slice, a
volume upload and the view prefetch, each through the effect's real model session, worker and timers
and a real model process.
"""
from __future__ import annotations

import ctypes
import statistics
import time

import numpy as np

import strict_qt

_usleep = ctypes.PyDLL(None).usleep  # PyDLL: the GIL stays held during the call, as in Qt's event loop


def hold(seconds: float) -> None:
    _usleep(int(seconds * 1e6))


def free(seconds: float) -> None:
    time.sleep(seconds)


BLOCKS = {"held": hold, "free": free}


def use_model_process(s, engine="torch"):
    """Give the effect a model session on a real model process with ``engine`` on the CPU; start it (a start
    is not a box) and return the session."""
    from medsamkit.backend import open_backend
    from medsamkit.mrml.session import ModelSession

    backend = open_backend("process", engine=engine, device="cpu")  # the effect fixture's opener is in-process
    backend.start()
    session = ModelSession(backend)
    s.effect.session.close()
    s.effect.session = session
    assert session.backend.info().extra["process"]
    return session


def loop(until, block, timeout=120.0) -> float:
    seconds = strict_qt.run_event_loop(until, timeout, block)
    assert until(), f"not done within {timeout:g} s of the event loop"
    return seconds


def time_box(s, drag, block) -> float:
    """Seconds from the box's mouse press to its result in the segment (``drag()`` draws it)."""
    start = time.monotonic()
    drag()
    loop(lambda: s.effect.job is None, block)
    return time.monotonic() - start


def time_upload(s, session, volume, block) -> float:
    """Seconds to upload ``volume`` to the model process on the effect's worker (the effect's timers only)."""
    def work(progress=None, cancel=None):
        session.backend.set_volume(volume, "auto")

    start = time.monotonic()
    job = s.effect.worker.submit(work, label="upload")
    s.effect.watchWorker()
    loop(job.done, block)
    job.result()
    session._held = None  # set behind the session's back: it no longer holds the scene's volume
    return time.monotonic() - start


def time_prefetch(s, sliceToRas, block, timeout=120.0) -> float:
    """Seconds from the view prefetch's dwell timer firing to the model process taking the request, the
    main loop otherwise idle (nothing but the effect's own timers runs)."""
    prefetch = s.effect.viewPrefetch
    prefetch.job = None
    prefetch.viewChanged(sliceToRas)
    fired = []

    def until():
        if prefetch.job is not None and not fired:
            fired.append(time.monotonic())
        return prefetch.job is not None and prefetch.job.done()

    loop(until, block, timeout)
    assert prefetch.job.result() is True, "the model process did not take the prefetch"
    return time.monotonic() - fired[0]


def upload_volumes(ct: np.ndarray, mib: float = 50.0):
    """Two int16 volumes of ``mib`` MiB made of the CT's slices with 5 HU noise (no repeats for the
    compressor); two, because uploading the volume the backend holds already sends nothing."""
    rng = np.random.default_rng(0)
    h, w = ct.shape[1:]
    n = int(mib * 2**20 / (2 * h * w))
    base = ct[np.arange(n) % ct.shape[0]].astype(np.float32)
    a = np.clip(base + rng.normal(0, 5, base.shape), -32768, 32767).astype(np.int16)
    return a, a + np.int16(1)


def ratios(times: dict) -> dict:
    """{case: {"held": [...], "free": [...]}} -> {case: (median held, median free, held/free)}."""
    out = {}
    for case, runs in times.items():
        held, free_ = statistics.median(runs["held"]), statistics.median(runs["free"])
        out[case] = (held, free_, held / free_)
    return out
