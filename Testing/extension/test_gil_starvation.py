"""The effect while the main thread holds the GIL as Slicer's Qt event loop does (gil_timing.py).

Inside Slicer the main thread keeps the GIL in C++ between Python slots, so the effect's worker thread
advances only while a slot releases it. The effect's timer runs only while a job is pending and waits
on the worker with the GIL released (medsamkit.mrml.session.Worker.wait): a box on an encoded slice and a
volume upload then take about as long as with the GIL free, and the view prefetch reaches the model
process while nothing else runs. Measured against the same work with the GIL free, interleaved, through
the effect's real model session and a model process (torch engine).
"""
from __future__ import annotations

import pytest

import gil_timing as g
from test_effect import _drag_box, _tumour_box, _view, effect_on_ct  # noqa: F401  (fixture)
from slicer_fixtures import ctx, model_session, harness, slicer_core  # noqa: F401

LIMIT_RATIO = 1.3  # held/free, medians of interleaved runs
SLACK_S = 0.02     # timer granularity on a loaded machine (2 ms timer, 10 ms wait, 5 ms GIL switch interval)
PREFETCH_SLACK_S = 0.05  # the prefetch is one small request (~6 ms free): a few timer periods, whatever the ratio
RUNS = 3


@pytest.fixture()
def effect_on_process(effect_on_ct):
    s = effect_on_ct
    if s.h.version != "5.10.0":
        pytest.skip("timing is the same for both loaders: run once")
    session = g.use_model_process(s)
    try:
        yield s, session
    finally:
        s.effect.session.close()


def _check(times, case, slack=SLACK_S):
    held, free, ratio = g.ratios(times)[case]
    print(f"{case}: held {held * 1000:.0f} ms, free {free * 1000:.0f} ms, held/free {ratio:.2f}")
    assert held <= LIMIT_RATIO * free + slack, f"{case}: {held:.3f} s with the GIL held vs {free:.3f} s free"


def test_box_on_an_encoded_slice_takes_the_models_time_while_the_main_thread_holds_the_gil(effect_on_process):
    s, _ = effect_on_process
    k = 11
    view = _view(s, k)
    drag = lambda: _drag_box(s, view, *_tumour_box(s, k))  # noqa: E731
    g.time_box(s, drag, g.free)  # encodes slice 11 (and uploads the volume): off the clock
    times = {"box": {"held": [], "free": []}}
    for _ in range(RUNS):
        for name in ("free", "held"):
            times["box"][name].append(g.time_box(s, drag, g.BLOCKS[name]))
    assert s.effect.session.backend.stats()["encoder_calls"] == 1  # every timed box: decoder only
    _check(times, "box")


def test_volume_upload_takes_its_time_while_the_main_thread_holds_the_gil(effect_on_process):
    s, session = effect_on_process
    from medsamkit.mrml.volumes import array_from_volume

    volumes = g.upload_volumes(array_from_volume(s.node), mib=50)
    times = {"upload": {"held": [], "free": []}}
    for run in range(RUNS):
        for i, name in enumerate(("free", "held")):
            times["upload"][name].append(g.time_upload(s, session, volumes[i], g.BLOCKS[name]))
    _check(times, "upload")


def test_view_prefetch_reaches_the_model_while_the_main_loop_idles_with_the_gil_held(effect_on_process):
    s, session = effect_on_process
    k = 11
    view = _view(s, k)
    g.time_box(s, lambda: _drag_box(s, view, *_tumour_box(s, k)), g.free)  # the volume is in the model process
    before = session.backend.stats()["prefetch"]["requested"]
    times = {"prefetch": {"held": [], "free": []}}
    for i, name in enumerate(("free", "held") * 2):
        times["prefetch"][name].append(g.time_prefetch(s, s.effect.sliceToRas(_view(s, 5 + i)), g.BLOCKS[name],
                                                            timeout=10.0))
    assert session.backend.stats()["prefetch"]["requested"] == before + 4
    _check(times, "prefetch", PREFETCH_SLACK_S)
