"""Every command's outputs: never an input, and written as one unit with their record.

:func:`test_every_command_refuses_an_output_equal_to_an_input` walks the parser: each sub-command
with an output option (``--out``, ``--out-dir``, ``--json FILE``) must have a case below, and each
case (the output named as one of the command's inputs) must exit 2 with one line before anything is
written, every input unchanged. Then the unit rule: a mask is never left without its prompt record.

Real LiteMedSAM (torch, CPU) for the few runs that need a result; the refusals happen before any
model loads.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from reliability_fixtures import readonly_dir  # noqa: F401  (pytest fixture)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "dicom"))
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"
MODEL = ["--engine", "torch", "--device", "cpu"]
BOX = ["--slice", "11", "--box", "92", "93", "123", "122", "--window", "lung"]
OUTPUT_OPTIONS = ("--out", "--out-dir", "--json")


def _main(argv, capsys) -> tuple[int, str]:
    from medsamkit.cli.commands import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def _digest(path: Path) -> str:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Real inputs of every command: a CT copy, a marker file, a segment result with its record, a propagation
    .seg.nrrd, a DICOM study with its SR, a bench dataset folder and a training data folder."""
    from dicom_fixtures import sample_case, write_study

    from medsamkit.cli.commands import main
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import write_markers
    from medsamkit.simulated_reader import simulate_markers

    d = tmp_path_factory.mktemp("inputs")
    ct = d / "ct.nii.gz"
    shutil.copy(CT, ct)
    label = read_image(CT_LABEL)
    markers = write_markers(simulate_markers(label.array > 0, VolumeGeometry.from_image(label), axis=0, every=2),
                            d / "lines.mrk.json")
    assert main(["segment", str(ct), *BOX, "--out", str(d / "mask.nii.gz"), *MODEL]) == 0
    assert main(["propagate", str(ct), *BOX, "--out", str(d / "prop.seg.nrrd"), *MODEL]) == 0
    image, lab = sample_case()
    write_study(d / "studies" / "s1", image, lab, every=2, extra_series=False)
    bench = d / "bench"
    shutil.copytree(REPO / "Testing" / "Data" / "prompts20", bench)
    return {"dir": d, "ct": ct, "markers": markers, "mask": d / "mask.nii.gz",
            "record": d / "mask.nii.gz.prompts.json", "seg": d / "prop.seg.nrrd", "study": d / "studies" / "s1",
            "bench": bench}


def _cases(f) -> dict:
    """command -> [(argv, the input that names the output)]: the output option given an input's path."""
    d = f["dir"]
    return {
        "segment": [(["segment", f["ct"], *BOX, "--out", f["ct"]], f["ct"])],
        "markers": [(["markers", f["ct"], f["markers"], "--out", f["ct"]], f["ct"])],
        "propagate": [(["propagate", f["ct"], *BOX, "--out", f["ct"]], f["ct"])],
        "bench": [(["bench", f["bench"], "--json", f["bench"] / "manifest.json"], f["bench"])],
        "replay": [
            (["replay", f["record"], "--volume", f["ct"], "--out", f["ct"]], f["ct"]),          # the CT
            (["replay", f["seg"], "--volume", f["ct"], "--out", f["seg"]], f["seg"]),          # the record's .seg.nrrd
            (["replay", f["record"], "--volume", f["ct"], "--out", f["mask"]], f["record"]),   # whose sidecar is the record
            (["replay", f["seg"], "--volume", f["ct"], "--out", d / "r.nii.gz", "--against", d / "r.nii.gz"], f["seg"]),
        ],
        "report": [(["report", "--case", f["seg"], f["ct"], "--out-dir", f["seg"]], f["seg"]),
                   (["report", "--case", f["seg"], f["study"], "--out-dir", f["study"]], f["study"])],
        "recist": [(["recist", f["study"], "--out", f["study"].parent], f["study"]),      # the results folder = the study
                   (["recist", f["study"], "--out", f["study"] / "results"], f["study"])],  # inside the study
        # an unknown --model stops an unprotected run before it writes (no files in the package folder)
        "demo": [(["demo", "--out-dir", CT.parent, "--model", "no-such-model"], CT)],
        "train": [(["train", "--data", f["bench"], "--out", f["bench"], "--max-steps", "1", "--epochs", "1"],
                   f["bench"])],
    }


def _commands_with_outputs() -> set:
    from medsamkit.cli.commands import build_parser

    found = set()

    def walk(name, parser):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for sub_name, sub in subs[0].choices.items():
                walk(f"{name} {sub_name}".strip(), sub)
            return
        if any(opt in OUTPUT_OPTIONS and a.nargs != 0 for a in parser._actions for opt in a.option_strings):
            found.add(name)

    walk("", build_parser())
    return found


def _own_copy(inputs, tmp_path) -> dict:
    """The shared inputs copied for one test, so a command that does overwrite one spoils no other test."""
    d = tmp_path / "inputs"
    shutil.copytree(inputs["dir"], d, symlinks=True)
    return {k: d / Path(v).relative_to(inputs["dir"]) if isinstance(v, Path) else v for k, v in inputs.items()}


def test_every_command_refuses_an_output_equal_to_an_input(inputs, capsys, tmp_path):
    inputs = _own_copy(inputs, tmp_path)
    cases = _cases(inputs)
    assert set(cases) == _commands_with_outputs()  # a new command with an output option needs a case here
    for command, runs in cases.items():
        for argv, victim in runs:
            before = {p: _digest(p) for p in (inputs["ct"], inputs["seg"], inputs["record"], inputs["mask"], victim)}
            rc, err = _main(argv, capsys)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert rc == 2 and len(lines) == 1, (command, argv, rc, err)
            assert any(w in err for w in ("would overwrite", "is the same file", " holds ", " is a file",
                                          " lies inside", "is the same folder as")), (command, err)
            assert {p: _digest(p) for p in before} == before, (command, argv)
    assert not (inputs["dir"] / "r.nii.gz").exists()
    assert not any(p.name.startswith("demo_") for p in CT.parent.iterdir())


def test_check_outputs_includes_each_outputs_record(tmp_path):
    from medsamkit.errors import InputError
    from medsamkit.io import check_outputs

    rec = tmp_path / "a.nii.gz.prompts.json"
    rec.write_text("{}")
    with pytest.raises(InputError, match="prompts.json file .* would overwrite the record"):
        check_outputs([("--out", tmp_path / "a.nii.gz")], [("the record", rec)], companions=(".prompts.json",))
    check_outputs([("--out", tmp_path / "b.nii.gz")], [("the record", rec)], companions=(".prompts.json",))


def test_segment_mask_is_never_left_without_its_record(inputs, tmp_path, capsys, monkeypatch):
    """The record cannot be written (its name is a folder; the disk fills between the files): no mask."""
    out = tmp_path / "m.nii.gz"
    (tmp_path / "m.nii.gz.prompts.json").mkdir()
    rc, err = _main(["segment", inputs["ct"], *BOX, "--out", out, "--overlay", tmp_path / "o.png", *MODEL], capsys)
    assert rc == 2 and "is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz.prompts.json"]

    shutil.rmtree(tmp_path / "m.nii.gz.prompts.json")
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):  # the record's bytes never reach the disk
        return real(self, "", *args, **kwargs) if ".prompts.json" in self.name else real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    rc, err = _main(["segment", inputs["ct"], *BOX, "--out", out, "--overlay", tmp_path / "o.png", *MODEL], capsys)
    assert rc == 2 and "Nothing was written" in err
    assert list(tmp_path.iterdir()) == []  # no mask, no overlay, no partial file
    monkeypatch.undo()
    rc, _ = _main(["segment", inputs["ct"], *BOX, "--out", out, "--overlay", tmp_path / "o.png", *MODEL], capsys)
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz", "m.nii.gz.prompts.json", "o.png"]


def test_markers_result_and_record_are_one_unit(inputs, tmp_path, capsys, monkeypatch):
    """An existing result is restored, not half-replaced, when its new record cannot be put in place."""
    import errno
    import os

    out = tmp_path / "t.seg.nrrd"
    shutil.copy(inputs["seg"], out)
    shutil.copy(inputs["seg"].with_name(inputs["seg"].name + ".prompts.json"), tmp_path / "t.seg.nrrd.prompts.json")
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    real = os.replace

    def no_space_for_the_record(src, dst, *args, **kwargs):
        if str(dst).endswith(".prompts.json") and ".partial" in str(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", no_space_for_the_record)
    rc, err = _main(["markers", inputs["ct"], inputs["markers"], "--out", out, "--window", "lung", *MODEL], capsys)
    monkeypatch.undo()
    assert rc == 2 and "Nothing was written" in err
    assert {p.name: _digest(p) for p in tmp_path.iterdir()} == before  # old result kept, no partial file left


def test_replay_onto_another_geometry_is_refused_before_the_model(inputs, tmp_path, capsys):
    import SimpleITK as sitk

    img = sitk.ReadImage(str(inputs["ct"]))
    img.SetSpacing(tuple(s * 1.5 for s in img.GetSpacing()))  # same shape, other spacing
    other = tmp_path / "other.nii.gz"
    sitk.WriteImage(img, str(other), True)
    rc, err = _main(["replay", inputs["record"], "--volume", other, "--out", tmp_path / "r.nii.gz",
                     "--model", "no-such-model"], capsys)  # refused before the model: the unknown kind is never seen
    assert rc == 2 and "spacing" in err and "other geometry" in err and "voxel-identical" not in err
    img = sitk.ReadImage(str(inputs["ct"]))
    img.SetOrigin(tuple(o + 10 for o in img.GetOrigin()))
    sitk.WriteImage(img, str(other), True)
    rc, err = _main(["replay", inputs["record"], "--volume", other, "--out", tmp_path / "r.nii.gz"], capsys)
    assert rc == 2 and "origin" in err
    assert not (tmp_path / "r.nii.gz").exists()


def test_replay_against_a_truncated_file_is_refused(inputs, tmp_path, capsys):
    import gzip

    raw = gzip.decompress(inputs["mask"].read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # a complete gzip stream holding half the voxels
    rc, err = _main(["replay", inputs["record"], "--volume", inputs["ct"], "--out", tmp_path / "r.nii.gz",
                     "--against", cut], capsys)
    assert rc == 2 and "truncated" in err and str(cut) in err
    small = tmp_path / "small.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8)), str(small))
    rc, err = _main(["replay", inputs["record"], "--volume", inputs["ct"], "--out", tmp_path / "r.nii.gz",
                     "--against", small], capsys)
    assert rc == 2 and "(3, 8, 8)" in err
    assert not (tmp_path / "r.nii.gz").exists()


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------
def test_report_of_box_only_and_empty_records_is_a_valid_report(inputs, tmp_path, capsys):
    import csv

    from medsamkit.io import read_image
    from medsamkit.records.record import TAG, encode_tag, new_record
    from medsamkit.segmentation_file import write_segmentation

    box = tmp_path / "box.seg.nrrd"  # a box-only result as a .seg.nrrd with its record
    assert _main(["replay", inputs["record"], "--volume", inputs["ct"], "--out", box, *MODEL], capsys)[0] == 0
    empty = tmp_path / "empty.seg.nrrd"  # a record holding no entries yet
    image = read_image(inputs["ct"])
    write_segmentation(np.zeros(image.array.shape, np.uint8), empty, image, [(1, "tumour")],
                       tags={1: {TAG: encode_tag(new_record([]))}})
    for seg in (box, empty):
        out = tmp_path / f"report_{seg.name.split('.')[0]}"
        rc, err = _main(["report", "--case", seg, inputs["ct"], "--out-dir", out], capsys)
        assert rc == 0, err
        with open(out / "review.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows == []  # no 3D result: nothing to review, and the header says what the columns are
        assert (out / "review.csv").read_text().startswith("case,segment,rank,slice")
        with open(out / "report.csv", newline="") as f:
            report = list(csv.DictReader(f))
        assert len(report) == (1 if seg is box else 0)
        if seg is box:
            assert report[0]["by_type"] == "box 1" and int(report[0]["final_voxels"]) > 0
        assert "Annotation report" in (out / "report.html").read_text()


def test_report_options_and_inputs_are_checked(inputs, tmp_path, capsys, readonly_dir):
    import gzip

    import SimpleITK as sitk

    case = ["--case", inputs["seg"], inputs["ct"]]
    for top in ("-1", "nan", "2"):
        rc, err = _main(["report", *case, "--out-dir", tmp_path / "r", "--top", top], capsys)
        assert rc == 2 and "--top" in err
    rc, err = _main(["report", *case, "--out-dir", readonly_dir / "sub" / "r"], capsys)
    assert rc == 2 and "Cannot create the report folder" in err and len(err.strip().splitlines()) == 1
    rc, err = _main(["report", *case, "--out-dir", readonly_dir], capsys)
    assert rc == 2 and "Cannot write" in err
    small = tmp_path / "small.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.int16)), str(small))
    rc, err = _main(["report", "--case", inputs["seg"], small, "--out-dir", tmp_path / "r"], capsys)
    assert rc == 2 and "(3, 8, 8)" in err and "Give the volume" in err
    # a .seg.nrrd cut short (its gzip stream ends early / its raw voxels are missing)
    cut = tmp_path / "cut.seg.nrrd"
    data = inputs["seg"].read_bytes()
    cut.write_bytes(data[: len(data) - 200])
    rc, err = _main(["report", "--case", cut, inputs["ct"], "--out-dir", tmp_path / "r"], capsys)
    assert rc == 2 and "Cannot read the segmentation" in err and str(cut) in err and len(err.strip().splitlines()) == 1
    head, _, body = data.partition(b"\n\n")
    raw = tmp_path / "raw.seg.nrrd"
    raw.write_bytes(head.replace(b"encoding: gzip", b"encoding: raw") + b"\n\n" + gzip.decompress(body)[:1000])
    rc, err = _main(["report", "--case", raw, inputs["ct"], "--out-dir", tmp_path / "r"], capsys)
    assert rc == 2 and "Cannot read the segmentation" in err and "expected" in err
    assert not (tmp_path / "r").exists()
