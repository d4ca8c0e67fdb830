"""The effect's flow without Qt: prompt state, prepare (main) -> worker thread -> apply (main), refine.

Real LiteMedSAM on the dev CT (lung tumour, slice 11), loaded with Slicer's reader; the worker is the
same :class:`medsamkit.mrml.session.Worker` the effect uses.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
K = 11


@pytest.fixture()
def ct(ctx):
    from types import SimpleNamespace

    from medsamkit.io import read_image
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    label = read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    g = volume_geometry(node)
    return SimpleNamespace(ctx=ctx, node=node, label=label, seg=seg, sid=sid, g=g,
                           view=volume_plane_slice_to_ras(g, 0, K), target=EditorLogicTarget(ctx, seg, node, sid))


def _ras(ct, xy):
    return ct.g.ijk_to_ras_points(ct.g.slice_to_ijk([xy], K, 0))[0]


def _dice(a, b):
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_prompt_state_resets_on_another_slice(ct):
    from medsamkit.mrml.interactive import PromptState
    from medsamkit.mrml.volumes import volume_plane_slice_to_ras

    state = PromptState()
    p = state.set_box(ct.node, ct.view, _ras(ct, (90, 91)), _ras(ct, (125, 124)))
    np.testing.assert_allclose(p.box, [90, 91, 125, 124], atol=1e-4)
    p = state.add_point(ct.node, ct.view, _ras(ct, (100, 100)), positive=False)
    assert p.box is not None and p.labels.tolist() == [0]
    other = volume_plane_slice_to_ras(ct.g, 0, K + 1)
    p = state.add_point(ct.node, other, ct.g.ijk_to_ras_points([[100, 100, K + 1]])[0])
    assert p.box is None and p.labels.tolist() == [1] and p.view.index == K + 1


def test_worker_thread_box_then_refine_with_negative_point(ct, model_session):
    """Box -> result on the worker while the main thread keeps running; then a negative click refines it."""
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.session import Worker
    from medsamkit.mrml.segments import segment_array

    ys, xs = np.nonzero(ct.label[K])
    state = PromptState()
    prompt = state.set_box(ct.node, ct.view, _ras(ct, (xs.min() - 3, ys.min() - 3)), _ras(ct, (xs.max() + 3, ys.max() + 3)))
    request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung")
    worker = Worker()
    try:
        main_ticks = 0
        job = worker.submit(run_request, model_session, request, label="box")
        assert worker.busy or job.done()
        while not job.done():  # what the effect's QTimer does: the main thread is free meanwhile
            main_ticks += 1
            time.sleep(0.005)
        result = job.result()
        assert threading.current_thread() is threading.main_thread()
        apply_result(ct.target, result, "replace")  # main thread
        first = segment_array(ct.ctx, ct.seg, ct.sid, ct.node)[K].astype(bool)
        assert np.array_equal(first, result.prediction.mask)
        assert _dice(first, ct.label[K]) > 0.75  # measured 0.814 (same as `medsamkit demo`)
        state.remember(result)
        # A negative click on a foreground pixel the model got wrong (outside the label), refine mode.
        wrong = np.argwhere(first & ~ct.label[K])
        assert len(wrong) > 0
        y, x = wrong[len(wrong) // 2]
        prompt = state.add_point(ct.node, ct.view, _ras(ct, (float(x), float(y))), positive=False)
        request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung", mask_input=state.previous)
        calls = model_session.backend.predictor.model.encoder_calls
        job = worker.submit(run_request, model_session, request, label="refine")
        refined = job.result(timeout=120)
        assert model_session.backend.predictor.model.encoder_calls == calls  # same slice: embedding cached, decoder only
        apply_result(ct.target, refined, "replace")
        second = segment_array(ct.ctx, ct.seg, ct.sid, ct.node)[K].astype(bool)
        assert np.array_equal(second, refined.prediction.mask)
        assert not second[y, x]  # the clicked pixel is background now
        assert not (second & ~first).any()  # a negative correction only removes, and only what it touches
        ct.target.undo()  # one undo step per result
        assert np.array_equal(segment_array(ct.ctx, ct.seg, ct.sid, ct.node)[K].astype(bool), first)
    finally:
        worker.shutdown()
    assert main_ticks > 0


def test_cancel_stops_the_job_and_writes_nothing(ct, model_session):
    from medsamkit.mrml.interactive import PromptState, prepare_slice_request, run_request
    from medsamkit.mrml.session import Worker
    from medsamkit.mrml.segments import segment_array
    from medsamkit.progress import Cancelled

    prompt = PromptState().set_box(ct.node, ct.view, _ras(ct, (20, 20)), _ras(ct, (60, 60)))
    request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung")
    worker = Worker()
    started = threading.Event()
    release = threading.Event()

    def blocked_then_run(*args, progress=None, cancel=None):
        started.set()
        release.wait(10)
        return run_request(*args, progress=progress, cancel=cancel)

    try:
        job = worker.submit(blocked_then_run, model_session, request)
        assert started.wait(10)
        job.cancel()
        release.set()
        with pytest.raises(Cancelled):
            job.result(timeout=60)
    finally:
        worker.shutdown()
    assert segment_array(ct.ctx, ct.seg, ct.sid, ct.node).sum() == 0


def test_a_finished_but_cancelled_job_never_yields_its_result(ct, model_session):
    """Cancel after the call returned but before the GUI polled: the result must not be applied."""
    from medsamkit.mrml.interactive import PromptState, prepare_slice_request, run_request
    from medsamkit.mrml.session import Worker
    from medsamkit.progress import Cancelled

    prompt = PromptState().set_box(ct.node, ct.view, _ras(ct, (90, 91)), _ras(ct, (125, 124)))
    request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung", whole_volume=True)
    worker = Worker()
    try:
        job = worker.submit(run_request, model_session, request)
        while not job.done():
            time.sleep(0.01)
        assert job.future.result().prediction.mask.any()  # the call itself succeeded
        job.cancel()
        with pytest.raises(Cancelled, match="nothing was written"):
            job.result()
    finally:
        worker.shutdown()


def test_background_job_does_not_block_a_prompt_and_is_superseded():
    from medsamkit.mrml.session import Worker

    worker = Worker()
    gate = threading.Event()
    ran = []
    try:
        first = worker.submit_background(lambda progress=None, cancel=None: gate.wait(10) and ran.append(1))
        second = worker.submit_background(lambda progress=None, cancel=None: ran.append(2))
        third = worker.submit_background(lambda progress=None, cancel=None: ran.append(3))
        assert not worker.busy  # a prefetch never makes the effect refuse a prompt
        job = worker.submit(lambda progress=None, cancel=None: "prompt")
        assert worker.busy and worker.current is job
        gate.set()
        assert job.result(timeout=10) == "prompt"
        assert third.result(timeout=10) is None and second.cancelled and first.cancelled
        assert ran == [1, 3]  # the queued older prefetch (2) never ran
    finally:
        worker.shutdown()


def test_session_keeps_the_volume_and_clicks_name_slices(ct, model_session):
    """The session gets the whole volume once; clicks on other slices then send only the slice index
    (no set_image, no second set_volume); a changed window without the volume falls back to the slice."""
    from medsamkit.backend.local import LocalBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import PromptState, prepare_slice_request, run_request, \
        volume_key
    from medsamkit.mrml.volumes import volume_plane_slice_to_ras
    from medsamkit.predictor import Predictor

    calls = []

    class CountingBackend(LocalBackend):
        def set_volume(self, *a, **kw):
            calls.append("set_volume")
            return super().set_volume(*a, **kw)

        def set_image(self, *a, **kw):
            calls.append("set_image")
            return super().set_image(*a, **kw)

    shared = model_session.backend.predictor
    session = ModelSession(CountingBackend(predictor=Predictor(shared.model, shared.cache)))
    key = volume_key(ct.node)
    assert not ModelSession().holds_volume(key)  # before the first run: no backend, no volume
    for k in (K, K - 1, K + 1):
        ys, xs = np.nonzero(ct.label[k])
        view = volume_plane_slice_to_ras(ct.g, 0, k)
        ras = [ct.g.ijk_to_ras_points(ct.g.slice_to_ijk([xy], k, 0))[0]
               for xy in ((xs.min() - 3, ys.min() - 3), (xs.max() + 3, ys.max() + 3))]
        prompt = PromptState().set_box(ct.node, view, *ras)
        request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung",
                                        whole_volume=not session.holds_volume(key))
        assert (request.volume is not None) == (k == K)  # only the first request carries the volume
        got = run_request(session, request)
        ref = Predictor(shared.model, shared.cache)
        ref.set_image(request.image, request.normalization)
        want = ref.predict(box=prompt.box)
        assert np.array_equal(got.prediction.mask, want.mask) and got.prediction.mask.any()
        assert session.holds_volume(key)
    assert calls == ["set_volume"]
    request = prepare_slice_request(ct.node, ct.seg, prompt, window="soft-tissue")
    assert run_request(session, request).prediction.mask.shape == request.image.shape
    assert calls == ["set_volume", "set_image"] and not session.holds_volume(key)
