"""The effect's model process: torch-free Slicer side, restart after a crash, no orphan, instant first box.

Real LiteMedSAM on CPU in a real ``medsamkit serve`` child on 127.0.0.1 (started by
medsamkit.backend.process exactly as the effect starts it), the dev CT loaded with slicer-core.
One model process serves the module (a start costs ~5-20 s on the shared CI machine); the tests
that must see a process die or a fresh interpreter start their own.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mrml_fixtures import ctx, slicer_core  # noqa: F401  (pytest fixtures)
from process_checks import gone, wait_gone

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("fastapi", reason="the model process is a medsamkit server: pip install 'medsamkit[server]'")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "medsamkit" / "data"
HARNESS = Path(__file__).with_name("effect_harness.py")
K = 11


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


@pytest.fixture(scope="module")
def proc_backend():
    """One model process for the module: torch engine (bit-equal to the in-process reference)."""
    from medsamkit.backend.process import ProcessBackend

    backend = ProcessBackend(engine="torch", device="cpu")
    backend.start()
    yield backend
    backend.close()
    assert not backend.alive


@pytest.fixture()
def ct(ctx):
    from medsamkit.io import read_image
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    label = read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    return SimpleNamespace(ctx=ctx, node=node, label=label, seg=seg, sid=sid, g=volume_geometry(node),
                           target=EditorLogicTarget(ctx, seg, node, sid))


def _view(ct, k):
    from medsamkit.mrml.volumes import volume_plane_slice_to_ras

    return volume_plane_slice_to_ras(ct.g, 0, k)


def _ras(ct, k, xy):
    return ct.g.ijk_to_ras_points(ct.g.slice_to_ijk([xy], k, 0))[0]


def _box_request(ct, session, k, state=None, window="lung"):
    from medsamkit.mrml.interactive import PromptState, prepare_slice_request, volume_key

    ys, xs = np.nonzero(ct.label[k])
    state = state or PromptState()
    prompt = state.set_box(ct.node, _view(ct, k), _ras(ct, k, (xs.min() - 3, ys.min() - 3)),
                           _ras(ct, k, (xs.max() + 3, ys.max() + 3)))
    return state, prepare_slice_request(ct.node, ct.seg, prompt, window=window,
                                        whole_volume=not session.holds_volume(volume_key(ct.node)))


def test_effect_path_in_a_fresh_interpreter_writes_a_mask_without_importing_torch():
    """The Slicer side of the effect (mrml + the model session) in a new interpreter: a box is
    segmented by the model process and written; torch (and the server stack) never load here."""
    out = subprocess.run([sys.executable, str(HARNESS), "--engine", "torch"], capture_output=True, text=True,
                         timeout=600, env=_env(), cwd=str(REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy_modules"] == [], report
    assert report["process"] and report["engine"] == "torch"
    assert report["voxels"] == report["slice_voxels"] > 0
    assert report["dice"] > 0.75, report  # measured 0.814, as in process (test_interactive)
    assert wait_gone(report["server_pid"], 10)  # session.close() stopped the model process


def test_refine_through_the_model_process_is_voxel_equal_to_in_process(ct, proc_backend, lite_model):
    """Box, then a negative and a positive correction (refine mode: mask prompt + progressive merge):
    the model process and an in-process LocalBackend write the same voxels at every step."""
    from medsamkit.backend.local import LocalBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import prepare_slice_request, run_request, volume_key
    from medsamkit.predictor import Predictor

    remote, local = ModelSession(proc_backend), ModelSession(LocalBackend(predictor=Predictor(lite_model)))
    states, results = {}, {}
    for name, session in (("process", remote), ("local", local)):
        state, request = _box_request(ct, session, K)
        res = run_request(session, request)
        state.remember(res)
        states[name], results[name] = state, [res]
    first = results["local"][0].prediction.mask
    wrong_in = np.argwhere(first & ~ct.label[K])      # foreground the model got wrong -> negative click
    missed = np.argwhere(~first & ct.label[K])        # tumour it missed -> positive click
    assert len(wrong_in) and len(missed)
    clicks = [(wrong_in[len(wrong_in) // 2], False), (missed[len(missed) // 2], True)]
    for (y, x), positive in clicks:
        for name, session in (("process", remote), ("local", local)):
            state = states[name]
            prompt = state.add_point(ct.node, _view(ct, K), _ras(ct, K, (float(x), float(y))), positive)
            request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung", mask_input=state.previous,
                                            whole_volume=not session.holds_volume(volume_key(ct.node)))
            res = run_request(session, request)
            state.remember(res)
            results[name].append(res)
    for a, b in zip(results["process"], results["local"]):
        assert np.array_equal(a.placement.mask, b.placement.mask) and a.placement.mask.any()
        assert np.array_equal(a.prediction.mask, b.prediction.mask)
    # the negative correction did something (the positive one, on a missed rim pixel, may leave the
    # merged mask as it was; what matters is that both paths agree at every step)
    (y0, x0) = clicks[0][0]
    masks = [r.prediction.mask for r in results["process"]]
    assert masks[0][y0, x0] and not masks[1][y0, x0]


def test_first_box_on_a_viewed_slice_costs_no_encoder_call(ct, proc_backend):
    """View a slice (the effect's dwell -> prefetch), then box it: the model process's encoder count
    does not move at box time. A box on a slice nobody viewed costs exactly one encoding."""
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import NormalizationCache, prepare_view_request, run_request, run_view_request

    session, cache = ModelSession(proc_backend), NormalizationCache()
    viewed, cold = 12, 10
    request = prepare_view_request(ct.node, _view(ct, viewed), "lung", cache, session)
    assert request is not None and request.volume is not None  # the first view uploads the volume
    before = proc_backend.stats()
    assert run_view_request(session, request)
    stats = _wait_prefetch_idle(proc_backend, before["prefetch"]["requested"] + 1)
    assert stats["prefetch"]["encoded"] == before["prefetch"]["encoded"] + 1
    assert stats["encoder_calls"] == before["encoder_calls"] + 1
    again = prepare_view_request(ct.node, _view(ct, viewed), "lung", cache, session)
    assert again.volume is None  # held now: a view request is a few bytes

    _, box = _box_request(ct, session, viewed)
    assert box.volume is None
    res = run_request(session, box)
    assert res.prediction.mask.any()
    assert proc_backend.stats()["encoder_calls"] == stats["encoder_calls"]  # decoder only

    _, box = _box_request(ct, session, cold)
    run_request(session, box)
    assert proc_backend.stats()["encoder_calls"] == stats["encoder_calls"] + 1


def _wait_prefetch_idle(backend, requested: int, seconds: float = 120.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = backend.stats()
        p = stats["prefetch"]
        if p["requested"] >= requested and not p["pending"] and not p["running"]:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"prefetch did not finish: {stats}")


def test_newer_views_supersede_queued_ones(ct, proc_backend):
    """While one slice is being encoded, three more views arrive: only the newest is encoded."""
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import prepare_view_request, run_view_request

    session = ModelSession(proc_backend)
    first = prepare_view_request(ct.node, _view(ct, 3), "soft-tissue", None, session)  # another window: cold
    before = proc_backend.stats()
    run_view_request(session, first)
    deadline = time.monotonic() + 60
    while not proc_backend.stats()["prefetch"]["running"]:  # the thread took slice 3
        assert time.monotonic() < deadline
    for k in (4, 5, 6):
        run_view_request(session, prepare_view_request(ct.node, _view(ct, k), "soft-tissue", None, session))
    stats = _wait_prefetch_idle(proc_backend, before["prefetch"]["requested"] + 4)
    p, p0 = stats["prefetch"], before["prefetch"]
    assert p["superseded"] - p0["superseded"] == 2  # slices 4 and 5 were never encoded
    assert p["encoded"] - p0["encoded"] == 2        # 3 (already running) and 6 (the newest)
    assert stats["encoder_calls"] - before["encoder_calls"] == 2


def test_killing_the_model_process_mid_job_gives_a_clear_status_and_the_next_box_restarts_it(ct, lite_model):
    from medsamkit.backend.process import ModelProcessError, ProcessBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import PromptState, prepare_volume_request, run_request
    from medsamkit.mrml.session import Worker
    from medsamkit.predictor import Predictor

    backend = ProcessBackend(engine="torch", device="cpu")
    session, worker = ModelSession(backend), Worker()
    try:
        backend.start()
        first_pid = backend.process.server_pid
        ys, xs = np.nonzero(ct.label[K])
        prompt = PromptState().set_box(ct.node, _view(ct, K), _ras(ct, K, (xs.min() - 3, ys.min() - 3)),
                                       _ras(ct, K, (xs.max() + 3, ys.max() + 3)))
        request = prepare_volume_request(ct.node, ct.seg, "propagate", "lung", prompt=prompt)
        job = worker.submit(run_request, session, request, label="propagation")
        deadline = time.monotonic() + 120
        while job.progress()[0] < 1:  # the job runs in the model process: slices are being segmented
            assert not job.done(), job.result()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(ModelProcessError) as err:
            job.result(timeout=120)
        message = str(err.value)
        assert "model process stopped while working" in message and "SIGKILL" in message
        assert "next prompt" in message and "nothing was written" in message
        assert not backend.alive

        _, box = _box_request(ct, session, K)
        res = run_request(session, box)  # the next box: a new process, the volume set again
        assert backend.alive and backend.restarts == 1 and backend.process.server_pid != first_pid
        assert backend.last_exit == "killed by signal 9 (SIGKILL)"
        ref = Predictor(lite_model)
        ref.set_image(box.image, box.normalization)
        assert np.array_equal(res.prediction.mask, ref.predict(box=box.prompt.box).mask)
    finally:
        worker.shutdown()
        backend.close()
    assert wait_gone(first_pid, 5)


def test_a_refinement_survives_a_restart(ct, lite_model):
    """The previous result's logits died with the process: the next correction recomputes them from
    their prompts on the new process and gives the in-process result."""
    from medsamkit.backend.local import LocalBackend
    from medsamkit.backend.process import ProcessBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import prepare_slice_request, run_request
    from medsamkit.predictor import Predictor

    backend = ProcessBackend(engine="torch", device="cpu")
    try:
        out = {}
        for name, session in (("process", ModelSession(backend)),
                              ("local", ModelSession(LocalBackend(predictor=Predictor(lite_model))))):
            state, request = _box_request(ct, session, K)
            state.remember(run_request(session, request))
            if name == "process":
                os.kill(backend.process.server_pid, signal.SIGKILL)  # between two prompts this time
            prompt = state.add_point(ct.node, _view(ct, K), _ras(ct, K, (100.0, 100.0)), positive=False)
            request = prepare_slice_request(ct.node, ct.seg, prompt, window="lung", mask_input=state.previous)
            out[name] = run_request(session, request)
        assert backend.restarts == 1
        assert np.array_equal(out["process"].placement.mask, out["local"].placement.mask)
    finally:
        backend.close()


def test_an_adapter_and_the_default_engine_reach_the_model_process(ct, lite_model, tmp_path):
    """The effect's defaults (Engine auto) with an Adapter: the model process runs the adapted weights
    on ONNX Runtime when installed (the CLI's --engine auto rule), with the in-process result."""
    import torch

    from medsamkit.fast.engine import onnxruntime_available
    from medsamkit.models import load_model
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import run_request
    from medsamkit.predictor import Predictor
    from medsamkit.models.adapter_file import build_manifest, save_adapter

    # A decoder adapter file in the format `medsamkit train --parts decoder` writes: the base decoder's
    # transformer weights moved by seeded noise, so the adapted masks differ from the base ones.
    gen = torch.Generator().manual_seed(0)
    tensors = {k: v.detach().clone() for k, v in lite_model.net.state_dict().items() if k.startswith("mask_decoder.")}
    for k, v in tensors.items():
        if k.startswith("mask_decoder.transformer.") and k.endswith("weight") and v.ndim == 2:
            tensors[k] = v + 0.5 * v.std() * torch.randn(v.shape, generator=gen)
    adapter = save_adapter(tmp_path / "adapter.safetensors", tensors, build_manifest(lite_model, ["decoder"]))

    session = ModelSession()
    try:
        session.open(Adapter=str(adapter), Device="cpu")  # Engine left at the effect's default
        info = session.backend.info()
        engine = "onnx" if onnxruntime_available()[0] else "torch"
        assert info.extra["engine"] == engine and info.extra["process"]
        _, request = _box_request(ct, session, K)
        got = run_request(session, request).prediction.mask
    finally:
        session.close()
    tuned = Predictor(load_model("litemedsam", device="cpu", engine=engine, adapter=adapter))
    tuned.set_image(request.image, request.normalization)
    want = tuned.predict(box=request.prompt.box).mask
    base = Predictor(lite_model)
    base.set_image(request.image, request.normalization)
    assert np.array_equal(got, want)
    assert (got != base.predict(box=request.prompt.box).mask).sum() > 0  # the adapter changed the mask


def test_no_orphan_when_the_parent_is_killed(tmp_path):
    """A program that started a model process dies by kill -9: the model process exits by itself."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from medsamkit.backend.process import ModelProcess, model_arguments
        proc = ModelProcess(model_arguments(engine="torch", device="cpu"))
        proc.start()
        print(proc.server_pid, proc.url, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=str(tmp_path))
    try:
        line = parent.stdout.readline()
        assert line, parent.stderr.read()[-3000:]
        server_pid = int(line.split()[0])
        assert not gone(server_pid)
        parent.kill()
        parent.wait(10)
        assert wait_gone(server_pid, 15), "the model process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_model_process_that_cannot_start_says_why(tmp_path):
    from medsamkit.backend.process import ModelProcessError, ProcessBackend

    missing = tmp_path / "no-such-weights.pth"
    backend = ProcessBackend(checkpoint=str(missing), engine="torch", device="cpu", start_timeout=120)
    with pytest.raises(ModelProcessError, match="did not start") as err:
        backend.start()
    assert "no-such-weights.pth" in str(err.value)  # the end of its log, quoting the loader's error
    assert not backend.alive
    backend.close()


def test_model_options_reach_the_serve_command():
    from medsamkit.backend.process import model_arguments
    from medsamkit.cli.commands import build_parser

    args = model_arguments("medsam", "w.pth", "adapter.safetensors", "onnx", "cuda")
    parsed = build_parser().parse_args(["serve", *args])
    assert (parsed.model, parsed.checkpoint, parsed.adapter, parsed.engine, parsed.device) == (
        "medsam", "w.pth", "adapter.safetensors", "onnx", "cuda")
    parsed = build_parser().parse_args(["serve", *model_arguments()])
    assert (parsed.model, parsed.checkpoint, parsed.adapter, parsed.engine) == (None, None, None, "auto")


def test_a_session_refuses_a_local_model_choice_for_a_server():
    from medsamkit.errors import InputError
    from medsamkit.mrml.session import ModelSession

    with pytest.raises(InputError, match="choose a local model"):
        ModelSession().open(Backend="http://127.0.0.1:9", CheckpointPath="w.pth")
