"""make_app in process (FastAPI TestClient): session limits, memory limits, expiry, close.

No request here reaches the model (sessions are created and closed, never prompted), so these
tests cost no encoding; the model is the shared session fixture.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi)")
from fastapi.testclient import TestClient  # noqa: E402

from medsamkit import protocol
from medsamkit.protocol import wire  # noqa: E402
from medsamkit.server.app import make_app  # noqa: E402

IMAGE = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)  # 768 KiB


def create(c, array=IMAGE, kind="image", **meta):
    return c.post(protocol.PATH_SESSIONS, content=wire.encode_array(array, wire.CODEC_ZLIB),
                  headers={protocol.META_HEADER: json.dumps({"kind": kind, **meta})})


def test_session_count_limit_and_close(lite_model):
    with TestClient(make_app(lite_model, max_sessions=2)) as c:
        a, b = create(c), create(c)
        assert a.status_code == b.status_code == 200
        r = create(c)
        assert r.status_code == 503 and r.headers["retry-after"] and "2 sessions" in r.json()["detail"]
        assert c.delete(protocol.session_path(a.json()["session"])).json() == {"closed": True}
        assert c.delete(protocol.session_path(a.json()["session"])).json() == {"closed": False}  # idempotent
        assert create(c).status_code == 200  # the slot is free again
        r = c.post(protocol.session_path(a.json()["session"], "predict"), json={"box": [1, 1, 50, 50]})
        assert r.status_code == 404 and r.json()["code"] == "session_unknown"
        r = c.post(protocol.session_path(b.json()["session"], "predict"), content=b"\xff\x00 not json",
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["code"] == "malformed"
        assert c.get("/no/such/path").status_code == 404
        s = c.get(protocol.PATH_STATS).json()
        assert s["sessions"] == 2 and s["encoder_calls"] == lite_model.encoder_calls


def test_memory_limits(lite_model):
    # a 512x512 RGB session may hold: 0.75 MiB image + 0.75 MiB display + 1 MiB cache + 5 MiB logits = 7.5 MiB
    app = make_app(lite_model, max_session_bytes=1 << 20, max_total_bytes=12 << 20, session_cache_bytes=1 << 20)
    with TestClient(app) as c:
        big = np.zeros((9, 256, 256), np.int16)  # 1.1 MiB: over the per-session limit
        r = create(c, big, kind="volume")
        assert r.status_code == 413 and "per session" in r.json()["detail"]
        first = create(c)
        assert first.status_code == 200
        s = c.get(protocol.PATH_STATS).json()
        assert s["bytes"] >= IMAGE.nbytes  # what it holds now: its display image
        assert s["budget_bytes"] == int(7.5 * 2**20)
        r = create(c)  # 2 x 7.5 MiB > 12 MiB
        assert r.status_code == 503 and "--max-memory-mb" in r.json()["detail"]
        c.delete(protocol.session_path(first.json()["session"]))
        assert c.get(protocol.PATH_STATS).json()["bytes"] == 0
        assert create(c).status_code == 200


class Clock:
    """The seconds the server's sessions see; a test moves them on instead of sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_sessions_expire(lite_model):
    clock = Clock()
    with TestClient(make_app(lite_model, session_ttl_s=0.5, clock=clock)) as c:
        sid = create(c).json()["session"]
        assert c.post(protocol.session_path(sid, "heartbeat")).json()["expires_in"] == 0.5
        clock.now += 0.3
        assert c.post(protocol.session_path(sid, "heartbeat")).status_code == 200  # refreshed
        clock.now += 0.3
        assert c.post(protocol.session_path(sid, "heartbeat")).status_code == 200  # 0.6 s old, touched 0.3 s ago
        clock.now += 0.7
        r = c.post(protocol.session_path(sid, "heartbeat"))
        assert r.status_code == 404 and "expired" in r.json()["detail"]
        assert c.get(protocol.PATH_STATS).json()["sessions"] == 0


def test_bad_session_options_are_refused(lite_model):
    with TestClient(make_app(lite_model, token="a-token-long-enough-1234")) as c:
        auth = {"Authorization": "Bearer a-token-long-enough-1234"}
        assert c.get(protocol.PATH_STATS).status_code == 401
        assert c.get(protocol.PATH_VERSION).status_code == 200
        r = c.post(protocol.PATH_SESSIONS, content=wire.encode_array(IMAGE, wire.CODEC_ZLIB),
                   headers={**auth, protocol.META_HEADER: json.dumps({"kind": "image", "normalization": "bogus"})})
        assert r.status_code == 400 and "Unknown window" in r.json()["detail"]
        r = c.post(protocol.PATH_SESSIONS, content=wire.encode_array(np.zeros((4, 4, 5), np.uint8), wire.CODEC_ZLIB),
                   headers={**auth, protocol.META_HEADER: json.dumps({"kind": "image"})})
        assert r.status_code == 400 and "2D image" in r.json()["detail"]
        r = c.post(protocol.PATH_SESSIONS, content=wire.encode_array(IMAGE, wire.CODEC_ZLIB),
                   headers={**auth, protocol.META_HEADER: json.dumps({"kind": "image", "normalization": {"mode": 3}})})
        assert r.status_code == 422
        assert c.get(protocol.PATH_STATS, headers=auth).json()["sessions_created"] == 0
