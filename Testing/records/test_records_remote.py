"""Records made on a loopback ``medsamkit serve`` replay voxel-identical, on the server and locally.

The server runs the torch engine on the CPU (Testing/server/remote_server.py), the same engine and
weights as the local replay, so a record made remotely replays to the same voxels in both places.
"""
from __future__ import annotations

import secrets
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install 'medsamkit[server]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
import remote_server  # noqa: E402
from remote_server import ServerProcess  # noqa: E402

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

remote_server.START_TIMEOUT_S = max(remote_server.START_TIMEOUT_S, 300.0)  # model load on a busy machine

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("serve"), token=TOKEN).start()
    yield srv
    srv.stop()


def test_remote_record_replays_identical_remotely_and_locally(server, tmp_path, monkeypatch, capsys):
    from medsamkit.cli.commands import main
    from medsamkit.cli.records import _segments_of
    from medsamkit.records.record import read_record

    monkeypatch.setenv("MEDSAMKIT_TOKEN", TOKEN)
    seg = tmp_path / "prop.seg.nrrd"
    assert main(["propagate", str(CT), "--slice", "11", "--box", "92", "93", "123", "122", "--window", "lung",
                 "--out", str(seg), "--backend", server.url]) == 0
    (e,) = read_record(seg)["entries"]
    assert e["model"]["backend"] == server.url and e["model"]["kind"] == "litemedsam"
    from medsamkit.models import load_model

    # the server names its weights exactly (full SHA-256 in /version), as a local run does
    assert e["model"]["weights_sha256"] == load_model("litemedsam", device="cpu", engine="torch").checkpoint_sha256
    capsys.readouterr()
    assert main(["replay", str(seg), "--volume", str(CT), "--out", str(tmp_path / "remote.seg.nrrd"),
                 "--backend", server.url]) == 0
    assert "voxel-identical" in capsys.readouterr().out
    # the same record on the local model (torch, CPU): the same voxels
    assert main(["replay", str(seg), "--volume", str(CT), "--out", str(tmp_path / "local.seg.nrrd"),
                 "--device", "cpu", "--engine", "torch"]) == 0
    assert "voxel-identical" in capsys.readouterr().out
    a = _segments_of(seg)["Segment_1"]
    assert a.sum() > 0
    for name in ("remote", "local"):
        assert np.array_equal(a, _segments_of(tmp_path / f"{name}.seg.nrrd")["Segment_1"])
