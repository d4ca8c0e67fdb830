"""Server memory after its sessions close: RSS (psutil) of make_app in process over three rounds of sessions.

Each round opens two sessions on the bundled lung CT, runs a box on three slices and one propagation in
each, then closes both. After the close the process must hold about what it held before the first
session (the model and the runtime), not the sessions' arrays nor the ONNX engine's peak activations.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi)")
pytest.importorskip("onnxruntime", reason="the ONNX engine is the server's default on CPU")
psutil = pytest.importorskip("psutil")
from fastapi.testclient import TestClient  # noqa: E402

from medsamkit import protocol  # noqa: E402
from medsamkit.protocol import wire  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
SLACK_MIB = 150  # allocator slack and Python objects; the ORT arena alone kept ~700 MiB


def test_sessions_return_their_memory_when_closed():
    from medsamkit import load_model
    from medsamkit.io import read_image
    from medsamkit.server.app import make_app

    image = read_image(DATA / "sample_lung_ct.nii.gz")
    label = read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0
    ys, xs = np.nonzero(label[11])
    box = [float(xs.min() - 3), float(ys.min() - 3), float(xs.max() + 3), float(ys.max() + 3)]
    model = load_model("litemedsam", device="cpu", engine="onnx")
    me = psutil.Process()
    body = wire.encode_array(image.array, wire.CODEC_ZLIB)
    after = []
    with TestClient(make_app(model)) as c:
        start = me.memory_info().rss / 2**20
        for _ in range(3):
            sids = []
            for _ in range(2):
                r = c.post(protocol.PATH_SESSIONS, content=body,
                           headers={protocol.META_HEADER: json.dumps({"kind": "volume", "normalization": "lung"})})
                sid = r.json()["session"]
                for k in (10, 11, 12):
                    assert c.post(protocol.session_path(sid, "predict"), json={"box": box, "slice_index": k}).status_code == 200
                assert c.post(protocol.session_path(sid, "propagate"), json={"box": box, "slice_index": 11}).status_code == 200
                sids.append(sid)
            for sid in sids:
                assert c.delete(protocol.session_path(sid)).json() == {"closed": True}
            after.append(me.memory_info().rss / 2**20)
        assert c.get(protocol.PATH_STATS).json()["sessions"] == 0
    assert max(after) - start < SLACK_MIB, (start, after)
