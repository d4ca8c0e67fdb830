"""The client under failure: unreachable, killed mid-request, restarted, hung, idle sessions expiring.

One ``medsamkit serve`` subprocess (127.0.0.1, CPU, real LiteMedSAM) with a 4 s session TTL, killed
and restarted on the same port by the tests. Every wait is bounded.
"""
from __future__ import annotations

import signal
import socket
import threading
import time

import numpy as np
import pytest

from medsamkit.backend.errors import ServerUnreachableError
from medsamkit.backend.local import LocalBackend
from medsamkit.backend.remote import RemoteBackend
from remote_server import REPO, ServerProcess

TTL_S = 4.0
TIMEOUT_S = 20.0  # client timeout for one answer; the failure tests require much faster errors


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("serve"), extra_args=["--session-ttl", str(TTL_S)]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ct():
    from medsamkit.io import read_image

    image = read_image(REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz").array
    label = read_image(REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz").array > 0
    k = int(np.argmax(label.sum(axis=(1, 2))))
    ys, xs = np.nonzero(label[k])
    box = [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 3, int(ys.max()) + 3]
    point = [float(np.median(xs)), float(np.median(ys))]
    return {"volume": image, "k": k, "box": box, "point": point}


def test_unreachable_server_is_reported_quickly():
    with socket.socket() as s:  # a port nobody listens on (bound then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError, match="medsamkit serve"):
        RemoteBackend(f"http://127.0.0.1:{port}", timeout=3, connect_timeout=1, retries=1)
    assert time.monotonic() - t0 < 3


def test_killed_mid_request_then_restarted(server, ct, lite_model):
    """A crash during a request raises within the timeout; after a restart the client carries on:
    the session is re-created from the kept upload and a refinement that references a prediction
    made before the crash is recomputed, giving exactly the local result."""
    vol, k = ct["volume"], ct["k"]
    remote = RemoteBackend(server.url, timeout=TIMEOUT_S)
    try:
        remote.set_volume(vol, normalization="lung")
        first = remote.predict(box=ct["box"], slice_index=k, axis=0)
        assert first.mask.any() and remote.sessions_created == 1

        outcome = {}

        def click_on_new_slice():  # needs an encoding (~1.5 s): still running when the server dies
            t = time.monotonic()
            try:
                remote.predict(box=ct["box"], slice_index=k - 1, axis=0)
                outcome["error"] = None
            except Exception as exc:
                outcome["error"] = exc
            outcome["elapsed"] = time.monotonic() - t

        worker = threading.Thread(target=click_on_new_slice, daemon=True)
        worker.start()
        time.sleep(0.3)
        server.kill()
        worker.join(TIMEOUT_S + 5)
        assert not worker.is_alive(), "the client hung after the server died"
        assert isinstance(outcome["error"], ServerUnreachableError), outcome
        assert "medsamkit serve" in str(outcome["error"])
        assert outcome["elapsed"] < TIMEOUT_S

        server.start()  # same port
        refined = remote.predict(points=[ct["point"]], point_labels=[1], slice_index=k, axis=0, mask_input=first)
        assert remote.sessions_created == 2  # re-created once, transparently
        with LocalBackend(lite_model) as local:
            local.set_volume(vol, normalization="lung")
            ref_first = local.predict(box=ct["box"], slice_index=k, axis=0)
            ref = local.predict(points=[ct["point"]], point_labels=[1], slice_index=k, axis=0, mask_input=ref_first)
        assert np.array_equal(refined.mask, ref.mask) and refined.score == pytest.approx(ref.score, abs=1e-6)
        assert np.array_equal(remote.predict(box=ct["box"], slice_index=k, axis=0).mask, ref_first.mask)
        # logits of a pre-crash prediction, read now: recomputed on the new session, equal to local
        np.testing.assert_allclose(first.low_res_logits, ref_first.low_res_logits, atol=1e-5)
    finally:
        remote.close()


def test_hung_server_raises_within_timeout(server, ct):
    remote = RemoteBackend(server.url, timeout=TIMEOUT_S)
    try:
        remote.set_volume(ct["volume"], normalization="lung")
        remote.predict(box=ct["box"], slice_index=ct["k"], axis=0)
        remote.timeout = 2.0  # the next answer must come within 2 s
        server.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(ServerUnreachableError, match="did not answer within 2 s"):
                remote.predict(box=ct["box"], slice_index=ct["k"], axis=0)
            assert time.monotonic() - t0 < 4.0
        finally:
            server.proc.send_signal(signal.SIGCONT)
        remote.timeout = TIMEOUT_S
        assert remote.predict(box=ct["box"], slice_index=ct["k"], axis=0).mask.any()  # the session survived
    finally:
        remote.close()


def test_heartbeat_keeps_idle_session_and_expired_one_is_recreated(server):
    rng = np.random.default_rng(3)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    image[20:40, 20:40] = 255
    beating = RemoteBackend(server.url, timeout=TIMEOUT_S, heartbeat_s=0.5)
    silent = RemoteBackend(server.url, timeout=TIMEOUT_S, heartbeat_s=3600)
    try:
        beating.set_image(image)
        silent.set_image(image)
        time.sleep(TTL_S + 2.0)  # idle past the TTL; the server sweeps every second
        a = beating.predict(box=[18, 18, 42, 42])
        b = silent.predict(box=[18, 18, 42, 42])
        assert beating.sessions_created == 1   # kept alive by its heartbeat
        assert silent.sessions_created == 2    # expired, re-created transparently
        assert np.array_equal(a.mask, b.mask)
    finally:
        beating.close()
        silent.close()


def test_cancel_stops_a_long_remote_job(server, ct):
    """Cancelling a markers job stops the server's work at the next slice (not after all of them)."""
    import httpx

    from medsamkit.markers import BoxPlan
    from medsamkit.progress import Cancelled
    from medsamkit import protocol

    vol = ct["volume"]
    plan = BoxPlan(axis=0, boxes={k: np.asarray(ct["box"], float) for k in range(vol.shape[0])},
                   marked=[0, vol.shape[0] - 1])

    def encoder_calls():
        return httpx.get(server.url + protocol.PATH_STATS, timeout=10).json()["encoder_calls"]

    remote = RemoteBackend(server.url, timeout=TIMEOUT_S)
    try:
        remote.set_volume(vol, normalization="lung")
        before, seen = encoder_calls(), []
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            remote.segment_plan(plan, progress=lambda done, total, text: seen.append(done),
                                cancel=lambda: bool(seen) and seen[-1] >= 1)
        encoded = encoder_calls() - before
        assert 1 <= encoded <= 4 < vol.shape[0], encoded  # stopped within a slice or two of the request
        assert time.monotonic() - t0 < TIMEOUT_S
        assert remote.predict(box=ct["box"], slice_index=ct["k"], axis=0).mask.any()  # the session still works
    finally:
        remote.close()
