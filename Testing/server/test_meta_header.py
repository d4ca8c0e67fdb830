"""The ``X-MedSAMKit-Meta`` header: bounded in size and JSON nesting, a clear 4xx instead of a server error.

make_app in process (FastAPI TestClient) with the shared LiteMedSAM; no request reaches the model.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi)")
from fastapi.testclient import TestClient  # noqa: E402

from medsamkit import protocol  # noqa: E402
from medsamkit.protocol import wire  # noqa: E402
from medsamkit.server.app import make_app  # noqa: E402

IMAGE = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)


def _create(c, meta_text: str):
    return c.post(protocol.PATH_SESSIONS, content=wire.encode_array(IMAGE, wire.CODEC_ZLIB),
                  headers={protocol.META_HEADER: meta_text})


def _nested(depth: int) -> str:
    return '{"kind": "image", "x": ' + "[" * depth + "]" * depth + "}"


def test_a_huge_or_deeply_nested_meta_header_is_refused_with_4xx(lite_model):
    with TestClient(make_app(lite_model)) as c:
        r = _create(c, _nested(20_000))  # 40 KB, 20,000 deep: RecursionError -> HTTP 500 without the bounds
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        assert f"at most {protocol.MAX_META_BYTES}" in r.json()["detail"]
        r = _create(c, _nested(4_000))  # 8 KB: under the size bound, over the depth bound
        assert r.status_code == 422 and r.json()["code"] == "malformed"
        assert "nests 4001 levels deep" in r.json()["detail"]
        r = _create(c, "[" * 8000)  # unbalanced
        assert r.status_code == 422
        assert _create(c, json.dumps({"kind": "image", "label": "[[[[" * 100})).status_code == 200  # text
        assert _create(c, _nested(protocol.MAX_JSON_DEPTH - 1)).status_code == 200
        assert c.get(protocol.PATH_STATS).json()["sessions"] == 2


def test_json_depth_counts_brackets_outside_strings_only():
    assert wire.json_depth('{"a": [1, {"b": "]]]}}[[[\\"[["}]}') == 3
    assert wire.json_depth("[]") == 1 and wire.json_depth('"[["') == 0
    with pytest.raises(wire.WireError, match="JSON object"):
        wire.decode_meta("[1]")
    assert wire.decode_meta(None) == {} and wire.decode_meta('{"kind": "volume"}') == {"kind": "volume"}
