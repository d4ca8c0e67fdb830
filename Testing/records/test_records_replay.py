"""Prompt records from the CLI faces, replayed: voxel-identical on the same model, different on an adapter.

Real LiteMedSAM (torch engine, CPU) on the bundled lung CT (tumour on slices 10-12) and a 2D dev image
from Testing/Data; every command runs through ``medsamkit.cli.commands.main`` as a user would call it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"
PNG = REPO / "Testing" / "Data" / "cju1aqqv02qwz0878a5cyhr67.img.png"  # kvasir polyp, box 213 239 370 396
MODEL = ["--engine", "torch", "--device", "cpu"]


def run(*argv) -> None:
    from medsamkit.cli.commands import main

    assert main([str(a) for a in argv]) == 0


def replay_ok(record, volume, out, *extra, capsys=None) -> str:
    run("replay", record, "--volume", volume, "--out", out, "--device", "cpu", *extra)
    return capsys.readouterr().out if capsys else ""


@pytest.fixture(scope="module")
def marker_file(tmp_path_factory):
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import write_markers
    from medsamkit.simulated_reader import simulate_markers

    label = read_image(CT_LABEL)
    markers = simulate_markers(label.array > 0, VolumeGeometry.from_image(label), axis=0, every=2)
    return write_markers(markers, tmp_path_factory.mktemp("markers") / "lines.mrk.json")


@pytest.fixture(scope="module")
def markers_seg(tmp_path_factory, marker_file):
    """One markers run (3 slices) written by the CLI, shared by the tests below."""
    seg = tmp_path_factory.mktemp("markers_run") / "markers.seg.nrrd"
    run("markers", CT, marker_file, "--out", seg, "--window", "lung", "--name", "tumour", *MODEL)
    return seg


def test_segment_2d_box_and_3d_points_replay_voxel_identical(tmp_path, capsys):
    from medsamkit.records.record import read_record, sidecar_path

    out2d = tmp_path / "polyp.png"
    run("segment", PNG, "--box", 213, 239, 370, 396, "--out", out2d, *MODEL)
    rec = read_record(sidecar_path(out2d))
    (e,) = rec["entries"]
    assert e["kind"] == "box" and e["plane"] is None and e["prompt"]["box"]["xy"] == [213, 239, 370, 396]
    assert e["image"]["shape"] == [512, 512] or len(e["image"]["shape"]) == 2
    assert e["model"]["kind"] == "litemedsam" and len(e["model"]["weights_sha256"]) == 64
    text = replay_ok(sidecar_path(out2d), PNG, tmp_path / "replay.png", capsys=capsys)
    assert "voxel-identical" in text

    out3d = tmp_path / "ct.nii.gz"
    run("segment", CT, "--slice", 11, "--point", 108, 108, 1, "--point", 112, 110, 1, "--point", 60, 60, 0,
        "--window", "lung", "--out", out3d, *MODEL)
    (e,) = read_record(sidecar_path(out3d))["entries"]
    assert e["kind"] == "points" and e["plane"] == {"axis": 0, "name": "axial", "index": 11}
    assert [q["label"] for q in e["prompt"]["points"]] == [1, 1, 0]
    # the recorded physical position is the voxel's: IJK (108, 108, 11) through the file's geometry
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image

    g = VolumeGeometry.from_image(read_image(CT))
    np.testing.assert_allclose(e["prompt"]["points"][0]["ijk"], [108, 108, 11])
    np.testing.assert_allclose(e["prompt"]["points"][0]["lps"], (g.ijk_to_lps @ [108, 108, 11, 1])[:3], atol=1e-9)
    assert e["window"]["label"] == "lung" and e["window"]["requested"] == "lung"
    text = replay_ok(sidecar_path(out3d), CT, tmp_path / "replay.nii.gz", capsys=capsys)
    assert "voxel-identical" in text
    a, b = read_image(out3d).array, read_image(tmp_path / "replay.nii.gz").array
    assert a.sum() > 0 and np.array_equal(a, b)


def test_markers_and_propagate_records_in_seg_nrrd_replay_identical(tmp_path, markers_seg, capsys):
    from medsamkit.cli.records import _segments_of
    from medsamkit.records.record import read_record, seg_nrrd_records, sidecar_path

    seg = markers_seg
    tags = seg_nrrd_records(seg)  # the record inside the file's segment tags ...
    assert list(tags) == ["Segment_1"]
    (e,) = tags["Segment_1"]["entries"]
    assert e == read_record(sidecar_path(seg))["entries"][0]  # ... equals the sidecar
    assert e["kind"] == "markers" and e["prompt"]["plan"]["axis"] == 0 and e["prompt"]["markers"]
    assert e["result"]["slices"] == [10, 11, 12] and set(e["result"]["scores"]) == {"10", "11", "12"}
    capsys.readouterr()
    text = replay_ok(seg, CT, tmp_path / "markers_replay.seg.nrrd", capsys=capsys)
    assert "voxel-identical" in text and "1.000" in text
    assert np.array_equal(_segments_of(seg)["Segment_1"], _segments_of(tmp_path / "markers_replay.seg.nrrd")["Segment_1"])
    # the replay's own output carries a record too (a replay of a replay is possible)
    assert seg_nrrd_records(tmp_path / "markers_replay.seg.nrrd")["Segment_1"]["entries"][0]["kind"] == "markers"

    prop = tmp_path / "prop.seg.nrrd"
    run("propagate", CT, "--slice", 11, "--box", 92, 93, 123, 122, "--window", "lung", "--out", prop, *MODEL)
    (e,) = read_record(prop)["entries"]
    assert e["kind"] == "propagate" and e["plane"]["index"] == 11 and e["prompt"]["options"]["score_threshold"] == 0.5
    capsys.readouterr()
    text = replay_ok(prop, CT, tmp_path / "prop_replay.seg.nrrd", capsys=capsys)
    assert "voxel-identical" in text
    assert np.array_equal(_segments_of(prop)["Segment_1"], _segments_of(tmp_path / "prop_replay.seg.nrrd")["Segment_1"])


def _perturbed_adapter(path: Path) -> Path:
    """A small 'adapter': LiteMedSAM's mask-decoder upscaling weights with 30 % noise (fixed seed)."""
    import torch

    from medsamkit.models import load_model
    from medsamkit.models.adapter_file import FORMAT, save_adapter

    model = load_model("litemedsam", device="cpu", engine="torch")  # the network itself, to perturb
    gen = torch.Generator().manual_seed(0)
    tensors = {k: v + 0.3 * v.std() * torch.randn(v.shape, generator=gen)
               for k, v in model.net.state_dict().items() if k.startswith("mask_decoder.output_upscaling")}
    manifest = {"format": FORMAT, "format_version": 1, "parts": ["decoder"], "adapter_layout": None,
                "base": {"kind": "litemedsam", "checkpoint_sha256": model.checkpoint_sha256}}
    return save_adapter(path, tensors, manifest)


def test_replay_with_another_adapter_changes_masks_and_reports_dice(tmp_path, markers_seg, capsys):
    from medsamkit.cli.records import _segments_of
    from medsamkit.records.record import read_record

    seg = markers_seg
    adapter = _perturbed_adapter(tmp_path / "noisy.safetensors")
    capsys.readouterr()
    text = replay_ok(seg, CT, tmp_path / "adapted.seg.nrrd", "--adapter", adapter, capsys=capsys)
    print(text)
    assert "different from the record" in text
    row = [line for line in text.splitlines() if line.startswith("tumour")][0].split()
    d = float(row[4])
    a, b = _segments_of(seg)["Segment_1"], _segments_of(tmp_path / "adapted.seg.nrrd")["Segment_1"]
    expect = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert d == pytest.approx(expect, abs=6e-4) and 0.2 < d < 0.999  # changed, but the same lesion
    new = read_record(tmp_path / "adapted.seg.nrrd")["entries"][0]
    assert new["model"]["adapter"]["name"] == "noisy.safetensors"
    assert new["prompt"]["plan"] == read_record(seg)["entries"][0]["prompt"]["plan"]  # the same prompts


def test_corrupt_foreign_and_newer_records_are_refused(tmp_path, markers_seg):
    from medsamkit.errors import InputError
    from medsamkit.records.record import RecordError, decode_tag, encode_tag, loads, read_record

    good = read_record(markers_seg)
    text = json.dumps(good)
    with pytest.raises(RecordError, match="not valid JSON"):
        loads(text[: len(text) // 2])
    with pytest.raises(RecordError, match="not a medsamkit prompt record"):
        loads(json.dumps({"schema": "monailabel.session", "entries": []}))
    with pytest.raises(RecordError, match="update medsamkit"):
        loads(json.dumps(dict(good, schema_version=99)))
    broken = json.loads(text)
    broken["entries"][0]["prompt"]["plan"]["boxes"]["11"] = [1, 2, "x", 4]
    with pytest.raises(RecordError, match=r"entry 1 .*field prompt.plan.boxes.11\[2\]: must be a finite number"):
        loads(json.dumps(broken))
    broken = json.loads(text)
    del broken["entries"][0]["model"]
    with pytest.raises(RecordError, match="field entry: missing 'model'"):
        loads(json.dumps(broken))
    # the tag text survives names with the tag separators in them
    odd = json.loads(text)
    odd["entries"][0]["segment"]["name"] = "a|b:c%d\ne"
    assert decode_tag(encode_tag(odd)) == odd
    assert "|" not in encode_tag(odd) and ":" not in encode_tag(odd)
    # the CLI says so and writes nothing
    bad = tmp_path / "bad.prompts.json"
    bad.write_text('{"schema": "something-else"}')
    from medsamkit.cli.commands import main

    assert main(["replay", str(bad), "--volume", str(CT), "--out", str(tmp_path / "x.seg.nrrd")]) == 2
    assert not (tmp_path / "x.seg.nrrd").exists()
    other = tmp_path / "other.nii.gz"
    from medsamkit.io import read_image, write_mask

    small = read_image(CT)
    write_mask(np.zeros((5, 8, 8), np.uint8), other)
    with pytest.raises(InputError, match="shape"):
        from medsamkit.records.replay import replay

        replay(None, good, read_image(other))
    del small
