"""Defect 2: inside Slicer the main thread holds the GIL while Qt's event loop runs (no
PyEval_SaveThread around it in Slicer 5.8/5.10 or their CTK), and Python gets it back only when a timer
slot runs. This test does the same on the "main thread": it holds the GIL in C (ctypes.PyDLL calls do
not release it) for 95 ms at a time, then runs the event loop once (the effect's 100 ms poll), and
measures how long a box takes to arrive, against the same box with the GIL free.

A Python worker thread in the Slicer process advances only in those gaps, so today a box takes many
times the model's own time. It must arrive in about the model's own time once the model runs in its
own process (issue 14, the model-process work): until that lands this test is an expected failure.
"""
from __future__ import annotations

import ctypes
import time

import pytest

from test_effect import _drag_box, _tumour_box, _view, effect_on_ct  # noqa: F401  (fixture)
from slicer_fixtures import ctx, engine, harness, slicer_core  # noqa: F401

HOLD_MS = 95
LIMIT_RATIO = 1.5  # "about the model's own time"; measured 2.5x today (33.1 s vs 13.0 s, under parallel load)


def _time_box(s, k, hold_gil, window):
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call, as in Qt's event loop
    s.scripted.setParameter("Window", window)  # a window no other test uses: a slice image not encoded yet
    start = time.monotonic()
    _drag_box(s, _view(s, k), *_tumour_box(s, k))
    deadline = start + 120
    while s.effect.job is not None and time.monotonic() < deadline:
        if hold_gil:
            libc.usleep(HOLD_MS * 1000)
        else:
            time.sleep(HOLD_MS / 1000)
        s.h.app.processEvents()
    assert s.effect.job is None, "no result within 120 s"
    return time.monotonic() - start


@pytest.mark.xfail(strict=True, reason="the model still runs on a Python thread in Slicer's process; passes "
                                       "once the effect's 'local' backend is a model process (issue 14)")
def test_box_arrives_in_about_the_models_time_while_the_main_thread_holds_the_gil(effect_on_ct):
    s = effect_on_ct
    if s.h.version != "5.10.0":
        pytest.skip("timing is the same for both loaders: run once")
    free = _time_box(s, 11, hold_gil=False, window="401,41")  # encoder + decoder, the GIL free
    held = _time_box(s, 11, hold_gil=True, window="399,39")   # the same work, the GIL held as in Slicer
    assert held < LIMIT_RATIO * free + 0.5, f"box took {held:.1f} s with the GIL held vs {free:.1f} s free"
