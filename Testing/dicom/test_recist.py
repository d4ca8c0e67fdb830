"""RECIST end to end with the real LiteMedSAM on CPU: simulated reader lines -> SR -> masks equal to the
.mrk.json route on the dev tumours; the CLI over two studies (one broken), per-lesion errors, a lesion
measured on one slice, resuming, and no partial output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_fixtures import REPO, crop_k, sample_case, to_grid, write_study

pytest.importorskip("highdicom")
from conftest import dice  # noqa: E402

from medsamkit.backend.local import LocalBackend  # noqa: E402
from medsamkit.geometry import VolumeGeometry  # noqa: E402
from medsamkit.io import read_image  # noqa: E402
from medsamkit.markers import Marker, boxes_from_markers, read_markers, write_markers  # noqa: E402
from medsamkit.recist import JSON_FILE, RecistOptions, load_study, segment_study  # noqa: E402

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them


def _case(name, dev_data=None):
    if name == "lung1":  # the bundled crop of pyradiomics lung1 (tumour on 3 slices)
        image, label = sample_case()
        return image, label, "CT", 2
    if name == "brain1":
        d = REPO / "Testing" / "Data"
        return read_image(d / "brain1.img.nii.gz"), read_image(d / "brain1.seg.nii.gz").array > 0, "MR", 3
    image = read_image(dev_data / "brats" / "brats_2013_pat0002_1.img.nii.gz")
    label = read_image(dev_data / "brats" / "brats_2013_pat0002_1.seg.nii.gz").array > 0
    image, label = crop_k(image, label, 101, 106)  # 5 slices around the largest section: small model work
    return image, label, "MR", 3


@pytest.mark.parametrize("name", ["lung1", "brain1", "brats"])
def test_sr_route_equals_mrk_json_route(name, shared_predictor, tmp_path, request):
    dev = request.getfixturevalue("dev_data") if name == "brats" else None
    image, label, modality, every = _case(name, dev)
    series, markers = write_study(tmp_path / "study", image, label, modality, every=every, extra_series=False)
    # .mrk.json route (what `medsamkit markers` does): lines -> boxes on the NIfTI volume -> backend
    write_markers(markers, tmp_path / "axes.mrk.json")
    plan = boxes_from_markers(read_markers(tmp_path / "axes.mrk.json"), VolumeGeometry.from_image(image))
    backend = LocalBackend(predictor=shared_predictor)
    backend.set_volume(image.array, normalization="auto", modality=modality, direction=image.direction)
    ref = backend.segment_plan(plan).mask
    # DICOM route: series + SR -> study -> the same backend
    study = load_study(tmp_path / "study")
    (res,) = segment_study(backend, study, RecistOptions())
    assert res.ok, res.message
    ours = to_grid(res.mask, study.image, image)
    d_ref, d_ours = dice(ref, label), dice(ours, label)
    assert d_ref > 0.4, d_ref  # the lesion is found (brain1 every 3 slices: 0.54 measured)
    assert abs(d_ours - d_ref) < 0.005, (d_ours, d_ref)
    assert dice(ours, ref) > 0.99
    assert res.measured_slices == sorted(res.measured_slices) and len(res.measured_slices) >= 2


def _off_volume_marker(image):
    g = VolumeGeometry.from_image(image)
    ras = g.ijk_to_ras_points([[230.0, 20.0, 11.0], [260.0, 20.0, 11.0]])  # columns past the image's 224
    return Marker(ras[0], ras[1], "long_off")


def test_cli_two_studies_errors_resume(tmp_path, capsys):
    from medsamkit.cli.commands import main

    image, label = sample_case()
    good, bad = tmp_path / "studies" / "good", tmp_path / "studies" / "bad"
    series, markers = write_study(good, image, label, every=2,
                                  lesions=None)
    from medsamkit.dicom.sr_write import write_linear_report

    one_slice = [m for m in markers if m.name.endswith("_10")]
    write_linear_report([("T1", markers), ("T2-one-slice", one_slice), ("T3-off", [_off_volume_marker(image)])],
                        series, good / "sr.dcm")
    # the bad study: its SR refers to a series that is not in its folder
    write_study(tmp_path / "elsewhere", image, label, every=2, extra_series=False)
    bad.mkdir(parents=True)
    (bad / "sr.dcm").write_bytes((tmp_path / "elsewhere" / "sr.dcm").read_bytes())
    out = tmp_path / "out"
    argv = ["recist", "--studies", str(tmp_path / "studies"), "--out", str(out), "--engine", "torch",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 1
    text = capsys.readouterr()
    assert "bad: FAILED" in text.err and str(bad / "sr.dcm") in text.err and "not in" in text.err
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # nothing at all for the failed study
    rows = {r["lesion"]: r for r in json.loads((out / "good" / JSON_FILE).read_text())["lesions"]}
    assert rows["T1"]["status"] == "ok" and rows["T1"]["measured_slices"] == "10 12"
    assert rows["T2-one-slice"]["status"] == "ok" and rows["T2-one-slice"]["slices_covered"] >= 2  # propagated
    assert rows["T3-off"]["status"] == "error" and "outside the volume" in rows["T3-off"]["message"]
    assert str(good / "sr.dcm") in rows["T3-off"]["message"] and "T3-off" in rows["T3-off"]["message"]
    truth_ml = label.sum() * np.prod(image.spacing) / 1000
    assert 0.5 * truth_ml < rows["T1"]["volume_ml"] < 1.6 * truth_ml
    assert rows["T1"]["model"] == "litemedsam" and rows["T1"]["engine"] == "torch"
    # the prompt record of the segmented lesions, in the sidecar and the .seg.nrrd's tags
    from medsamkit.records.record import read_record
    from medsamkit.recist import NRRD_FILE, PROMPTS_FILE

    entries = read_record(out / "good" / PROMPTS_FILE)["entries"]
    assert [(e["kind"], e["segment"]["name"]) for e in entries] == [("recist", "T1"), ("recist", "T2-one-slice")]
    assert entries[0]["prompt"]["options"]["source"] == "sr" and entries[0]["model"]["engine"] == "torch"
    assert entries[1]["prompt"]["options"]["single_slice"] == "propagate"
    assert len(read_record(out / "good" / NRRD_FILE)["entries"]) == 2
    # resumable: the finished study is skipped, the failed one is tried again (and fails again)
    stamp = (out / "good" / JSON_FILE).stat().st_mtime_ns
    assert main(argv) == 1
    assert "good: already done" in capsys.readouterr().out
    assert (out / "good" / JSON_FILE).stat().st_mtime_ns == stamp


def test_cli_single_study_error_is_one_clear_line(tmp_path, capsys):
    from medsamkit.cli.commands import main

    image, label = sample_case()
    write_study(tmp_path / "s", image, label, every=2, extra_series=False)
    (tmp_path / "s" / "sr.dcm").write_bytes((tmp_path / "s" / "sr.dcm").read_bytes()[:900])  # damaged SR
    assert main(["recist", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "medsamkit recist: error:" in err and "no usable DICOM SR measurement report" in err
    assert "sr.dcm: cannot read this SR file" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
