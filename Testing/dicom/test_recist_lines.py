"""RECIST without an SR: a volume (NIfTI or a DICOM series folder) and a CSV of line end points (LPS or
RAS, stated) or Slicer line markups. On the dev tumours (lung1 CT, brain1 MR) the CSV in LPS and in RAS
gives the masks of the .mrk.json route; bad files are refused naming file, row and lesion, with nothing
written; every result carries its prompt record and replays voxel-identically (real LiteMedSAM, CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_fixtures import REPO, SAMPLE, sample_case, to_grid

from conftest import dice
from medsamkit.backend.local import LocalBackend
from medsamkit.errors import InputError
from medsamkit.geometry import VolumeGeometry
from medsamkit.io import read_image
from medsamkit.markers import Marker, boxes_from_markers, read_markers, write_markers
from medsamkit.simulated_reader import simulate_markers
from medsamkit.recist import (JSON_FILE, NRRD_FILE, PROMPTS_FILE, SEG_FILE, RecistOptions, load_lines_study,
                              read_lines_csv, segment_study, write_study)

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

LUNG = SAMPLE / "sample_lung_ct.nii.gz"
BRAIN = REPO / "Testing" / "Data" / "brain1.img.nii.gz"
FLIP = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS
HEADER = "lesion,x1,y1,z1,x2,y2,z2"


def _case(name):
    if name == "lung1":  # the bundled crop of pyradiomics lung1 (tumour on slices 10-12)
        image, label = sample_case()
        return LUNG, image, label, "CT", 2
    return BRAIN, read_image(BRAIN), read_image(REPO / "Testing" / "Data" / "brain1.seg.nii.gz").array > 0, "MR", 3


def _row(lesion, m, space="LPS", column=True):
    """One CSV row: the line's end points in ``space`` (and ``space`` itself when ``column``)."""
    a, b = (m.start_ras, m.end_ras) if space == "RAS" else (m.start_ras * FLIP, m.end_ras * FLIP)
    return ",".join([lesion] + [f"{v:.6f}" for v in (*a, *b)] + ([space] if column else []))


def write_csv(path, lesions, space="LPS", column=True):
    """lesions: [(name, markers)] -> a CSV in ``space``; ``column`` False: no space column (--space says it)."""
    lines = [HEADER + (",space" if column else "")]
    lines += [_row(name, m, space, column) for name, markers in lesions for m in markers]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# Same masks as the .mrk.json route, from a CSV in LPS and in RAS
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lung1", "brain1"])
def test_csv_lps_and_ras_equal_mrk_json_route(name, shared_predictor, tmp_path):
    volume, image, label, modality, every = _case(name)
    markers = simulate_markers(label, VolumeGeometry.from_image(image), axis=0, every=every)
    # the .mrk.json route of `medsamkit markers`: lines -> boxes -> backend
    write_markers(markers, tmp_path / "axes.mrk.json")
    ref_plan = boxes_from_markers(read_markers(tmp_path / "axes.mrk.json"), VolumeGeometry.from_image(image))
    backend = LocalBackend(predictor=shared_predictor)
    backend.set_volume(image.array, normalization="auto", modality=modality, direction=image.direction)
    ref = backend.segment_plan(ref_plan).mask
    assert dice(ref, label) > 0.4  # the lesion is found
    masks = {}
    for space in ("LPS", "RAS"):
        csv = write_csv(tmp_path / f"lines_{space}.csv", [("T1", markers)], space)
        study = load_lines_study(volume, csv)
        assert study.series is None and [p.lesion.name for p in study.lesions] == ["T1"]
        (item,) = study.lesions
        assert item.plan.marked == ref_plan.marked and item.plan.axis == ref_plan.axis
        for k in ref_plan.boxes:  # the same boxes to float precision
            np.testing.assert_allclose(item.plan.boxes[k], ref_plan.boxes[k], atol=1e-4)
        (res,) = segment_study(backend, study, RecistOptions())
        assert res.ok, res.message
        masks[space] = res.mask
        assert dice(res.mask, ref) > 0.99, (space, dice(res.mask, ref))
    # and the markups file itself through --lines (one lesion named after the file)
    study = load_lines_study(volume, tmp_path / "axes.mrk.json")
    assert [p.lesion.name for p in study.lesions] == ["axes"]
    (res,) = segment_study(backend, study, RecistOptions())
    assert dice(res.mask, masks["LPS"]) > 0.99


def test_csv_rows_grouped_by_lesion_and_space_option(tmp_path):
    image, label = sample_case()
    g = VolumeGeometry.from_image(image)
    markers = simulate_markers(label, g, axis=0, every=2)
    other = [Marker(*g.ijk_to_ras_points([[30, 40, 5], [60, 40, 5]]), "o1"),
             Marker(*g.ijk_to_ras_points([[45, 30, 5], [45, 50, 5]]), "o2")]
    # interleaved rows, ';' separated, upper-case header, a comment, a name column, an unknown column
    rows = ["# exported from a reading workstation", "Lesion;X1;Y1;Z1;X2;Y2;Z2;Space;Name;Comment"]
    for n, m in enumerate(markers):
        for les, mm in (("liver 1", m), ("node 2", other[n % 2])):
            a, b = mm.start_ras * FLIP, mm.end_ras * FLIP
            rows.append(";".join([les] + [f"{v:.6f}" for v in list(a) + list(b)] + ["lps", f"ax{n}", "x"]))
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    lesions = read_lines_csv(tmp_path / "l.csv")
    assert [les.name for les in lesions] == ["liver 1", "node 2"]
    assert len(lesions[0].markers) == 4 and len(lesions[1].markers) == 4
    for got, want in zip(lesions[0].markers, markers):
        np.testing.assert_allclose(got.start_ras, want.start_ras, atol=1e-5)
        np.testing.assert_allclose(got.end_ras, want.end_ras, atol=1e-5)
    assert lesions[0].markers[0].name == "liver 1: ax0" and lesions[0].where[0] == "row 3"
    # no space column: --space states it; RAS given as RAS gives the same points
    write_csv(tmp_path / "ras.csv", [("T1", markers)], "RAS", column=False)
    (les,) = read_lines_csv(tmp_path / "ras.csv", space="RAS")
    np.testing.assert_allclose(les.markers[1].end_ras, markers[1].end_ras, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Bad files: one clear message naming file, row and lesion; nothing written
# ------------------------------------------------------------------------------------------------
def _lung_lines():
    image, label = sample_case()
    return simulate_markers(label, VolumeGeometry.from_image(image), axis=0, every=2)


def _bad(kind, tmp_path):
    ms = _lung_lines()
    good = [_row("T1", m, "LPS") for m in ms]
    path = tmp_path / "bad.csv"
    if kind == "no_space":
        text = HEADER + "\n" + "\n".join(_row("T1", m, "LPS", column=False) for m in ms)
    elif kind == "missing_column":
        text = "lesion,x1,y1,z1,x2,y2,space\n" + "\n".join(good)
    elif kind == "not_a_number":
        cells = good[2].split(",")
        cells[2] = "12,5mm"
        text = HEADER + ",space\n" + "\n".join(good[:2] + ['"' + '","'.join(cells) + '"'] + good[3:])
    elif kind == "one_point":
        cells = good[1].split(",")
        text = HEADER + ",space\n" + "\n".join([good[0], ",".join(cells[:4] + ["", "", "", "LPS"])] + good[2:])
    elif kind == "same_point":
        cells = good[1].split(",")
        text = HEADER + ",space\n" + "\n".join([good[0], ",".join(cells[:4] + cells[1:4] + ["LPS"])] + good[2:])
    elif kind == "empty":
        text = "\n# nothing here\n"
    elif kind == "header_only":
        text = HEADER + ",space\n"
    elif kind == "bad_space":
        text = HEADER + ",space\n" + "\n".join(good[:3] + [good[3].rsplit(",", 1)[0] + ",IJK"])
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind, expected", [
    ("no_space", ["does not say which coordinate system", "add a column 'space'", "--space LPS|RAS"]),
    ("missing_column", ["row 1 (header): missing column(s) z2"]),
    ("not_a_number", ["row 4 (lesion 'T1'): y1 = '12,5mm' is not a number"]),
    ("one_point", ["row 3 (lesion 'T1'): the line has one point"]),
    ("same_point", ["row 3 (lesion 'T1'): both end points are the same point"]),
    ("empty", ["is empty"]),
    ("header_only", ["has a header but no line"]),
    ("bad_space", ["row 5 (lesion 'T1'): space 'IJK' is neither LPS nor RAS"]),
])
def test_bad_csv_is_refused_naming_file_row_lesion(kind, expected, tmp_path):
    path = _bad(kind, tmp_path)
    with pytest.raises(InputError) as err:
        load_lines_study(LUNG, path)
    text = str(err.value)
    assert str(path) in text, text
    for e in expected:
        assert e in text, text


def test_off_volume_and_wrong_space_refused_before_model(tmp_path):
    ms = _lung_lines()
    image, _ = sample_case()
    g = VolumeGeometry.from_image(image)
    off = Marker(*g.ijk_to_ras_points([[230.0, 20.0, 11.0], [260.0, 20.0, 11.0]]), "off")  # past column 224
    write_csv(tmp_path / "off.csv", [("T1", ms), ("T2", [off])], "LPS")
    with pytest.raises(InputError) as err:
        load_lines_study(LUNG, tmp_path / "off.csv")
    text = str(err.value)
    assert str(tmp_path / "off.csv") in text
    assert "row 6 (lesion 'T2'): the line lies (partly) outside the volume" in text
    assert "nothing was segmented" in text and "T1" not in text.split("problem(s)")[1]
    # RAS points declared LPS: every line is off the volume, and the message suggests the other system
    write_csv(tmp_path / "swapped.csv", [("T1", [Marker(m.start_ras * FLIP, m.end_ras * FLIP, m.name) for m in ms])],
              "RAS")
    text = str(pytest.raises(InputError, load_lines_study, LUNG, tmp_path / "swapped.csv").value)
    assert "row 2 (lesion 'T1')" in text and "(LPS and RAS swapped) these lines would lie inside" in text
    # a line across the axial slices the lesion's other lines were drawn on
    across = Marker(*g.ijk_to_ras_points([[100.0, 100.0, 9.0], [120.0, 100.0, 12.0]]), "across")
    write_csv(tmp_path / "across.csv", [("T3", ms + [across])], "LPS")
    text = str(pytest.raises(InputError, load_lines_study, LUNG, tmp_path / "across.csv").value)
    assert "lesion 'T3'" in text and "crosses slices" in text and "row 6" in text


def test_cli_bad_lines_exit_2_and_nothing_written(tmp_path, capsys):
    from medsamkit.cli.commands import main

    out = tmp_path / "out"
    path = _bad("one_point", tmp_path)
    assert main(["recist", "--volume", str(LUNG), "--lines", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "medsamkit recist: error:" in err and str(path) in err and "row 3 (lesion 'T1')" in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["recist", "--lines", str(path), "--out", str(out)]) == 2
    assert "--volume and --lines go together" in capsys.readouterr().err
    write_markers(_lung_lines(), tmp_path / "a.mrk.json")
    assert main(["recist", "--volume", str(LUNG), "--lines", str(tmp_path / "a.mrk.json"), "--space", "LPS",
                 "--out", str(out)]) == 2
    assert "--space is for CSV files" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------------
# Prompt records: written with the results, replayed voxel-identically
# ------------------------------------------------------------------------------------------------
def test_lines_study_record_replays_identically(shared_predictor, tmp_path):
    from medsamkit.records.record import TAG, read_record, seg_nrrd_records
    from medsamkit.records.replay import replay

    ms = _lung_lines()
    one_slice = [m for m in ms if m.name.endswith("_12")]  # T2: measured on one slice -> propagated
    write_csv(tmp_path / "l.csv", [("T1", ms), ("T2", one_slice)], "RAS")
    study = load_lines_study(LUNG, tmp_path / "l.csv")
    backend = LocalBackend(predictor=shared_predictor)
    results = segment_study(backend, study, RecistOptions())
    assert all(r.ok for r in results), [r.message for r in results]
    assert results[1].propagated and len(results[1].slices) >= 2
    model = {"model": "litemedsam", "version": "test"}
    out = tmp_path / "out" / study.name
    rows = write_study(out, study, results, model)
    assert sorted(p.name for p in out.iterdir()) == sorted([NRRD_FILE, PROMPTS_FILE, "lesions.nii.gz", "lesions.csv",
                                                            JSON_FILE])  # no DICOM SEG for a NIfTI volume
    assert [r["segment_number"] for r in rows] == [1, 2]
    summary = json.loads((out / JSON_FILE).read_text())
    assert PROMPTS_FILE in summary["files"] and summary["lines"] == str(tmp_path / "l.csv") and summary["sr"] is None
    # the record: in the sidecar and in the .seg.nrrd's segment tags, one "recist" entry per lesion
    record = read_record(out / PROMPTS_FILE)
    assert [e["kind"] for e in record["entries"]] == ["recist", "recist"]
    e1, e2 = record["entries"]
    assert (e1["segment"], e2["segment"]) == ({"id": "Segment_1", "name": "T1"}, {"id": "Segment_2", "name": "T2"})
    assert e1["prompt"]["plan"]["marked"] == [10, 12] and len(e1["prompt"]["markers"]) == 4
    np.testing.assert_allclose(e1["prompt"]["markers"][0]["start_lps"], ms[0].start_ras * FLIP, atol=1e-6)
    assert e2["prompt"]["options"]["single_slice"] == "propagate" and e2["plane"]["index"] == 12
    assert e1["window"]["requested"] == "auto" and e1["model"]["kind"] == "litemedsam"
    assert e1["model_seconds"] > 0 and e1["prompt"]["options"]["source"] == "csv"
    tags = seg_nrrd_records(out / NRRD_FILE)
    assert set(tags) == {"Segment_1", "Segment_2"} and TAG == "MedSAM.PromptRecord"
    assert read_record(out / NRRD_FILE)["entries"][0]["id"] in {e1["id"], e2["id"]}
    # replay from the .seg.nrrd on the same model: voxel-identical, both paths (plan, and propagate)
    again = replay(backend, read_record(out / NRRD_FILE), read_image(LUNG))
    assert again.all_identical, [(e.entry["segment"]["name"], e.identical) for e in again.entries]
    labels = read_image(out / NRRD_FILE).array
    assert np.array_equal(again.segments["Segment_1"] > 0, results[0].mask > 0)
    assert np.array_equal(labels == 2, results[1].mask > 0)


def test_cli_csv_on_dicom_series_writes_seg(shared_predictor, tmp_path, capsys):
    """--volume SERIES_DIR --lines CSV (--space RAS): a DICOM SEG beside the labelmaps, the mask of the NIfTI
    route, and the series folder reads back as the very array the record was made on (replay --volume DIR)."""
    from medsamkit.cli.commands import main
    from series_writer import write_image_series
    from seg_reader import read_seg_masks
    from medsamkit.records.record import read_record

    image, label = sample_case()
    ms = simulate_markers(label, VolumeGeometry.from_image(image), axis=0, every=2)
    write_image_series(image, tmp_path / "CT", "CT", file_order=np.random.default_rng(1).permutation(23),
                       patient_id="P1", description="measured")
    write_csv(tmp_path / "lines.csv", [("T1", ms)], "RAS", column=False)
    out = tmp_path / "out"
    argv = ["recist", "--volume", str(tmp_path / "CT"), "--lines", str(tmp_path / "lines.csv"), "--space", "RAS",
            "--out", str(out), "--engine", "torch", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert "CT: 1 of 1 lesion(s) segmented" in capsys.readouterr().out
    study_out = out / "CT"
    assert {SEG_FILE, NRRD_FILE, PROMPTS_FILE, JSON_FILE} <= {p.name for p in study_out.iterdir()}
    study = load_lines_study(tmp_path / "CT", tmp_path / "lines.csv", space="RAS")
    nrrd = read_image(study_out / NRRD_FILE).array
    (seg_mask,) = read_seg_masks(study_out / SEG_FILE, study.series).values()
    assert np.array_equal(seg_mask, nrrd == 1)
    row = json.loads((study_out / JSON_FILE).read_text())["lesions"][0]
    assert row["tracking_uid"] and row["status"] == "ok"
    # the same lines on the NIfTI volume (API, same model kind) give the same mask
    results = segment_study(LocalBackend(predictor=shared_predictor), load_lines_study(LUNG, tmp_path / "lines.csv",
                                                                                         space="RAS"))
    assert dice(to_grid(nrrd == 1, study.image, image), results[0].mask) > 0.99
    # resumable: the finished output is skipped
    assert main(argv) == 0 and "already done" in capsys.readouterr().out
    # replay --volume CT/ reads the same array and geometry the record was made on
    again = read_image(tmp_path / "CT")
    assert np.array_equal(again.array, study.image.array)
    assert read_record(study_out / NRRD_FILE)["entries"][0]["image"]["shape"] == list(again.array.shape)
    np.testing.assert_allclose(again.origin, study.image.origin, atol=1e-4)
    np.testing.assert_allclose(again.direction, study.image.direction, atol=1e-6)
