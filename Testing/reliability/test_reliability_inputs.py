"""Damaged inputs are refused by the readers every command goes through, never read as zeros; RECIST
says what it left out; its output folder is checked before the model and cleaned after a kill.

Model-free except the RECIST run of :func:`test_recist_reports_a_dropped_line_on_the_row_and_in_the_summary`
(real LiteMedSAM, torch, CPU, one lesion on the bundled lung CT).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_fixtures import readonly_dir  # noqa: F401  (pytest fixture)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dicom"))


def _main(argv, capsys) -> tuple[int, str]:
    from medsamkit.cli.commands import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.fixture()
def series_dir(tmp_path):
    """The bundled CT as a DICOM series (23 files) -> (folder, files sorted by slice)."""
    from dicom_fixtures import sample_case

    from series_writer import write_image_series

    image, _ = sample_case()
    files = write_image_series(image, tmp_path / "series", "CT", patient_id="P1", description="measured")
    return tmp_path / "series", files


# ---------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------
def test_dicom_slice_with_short_pixel_data_is_refused(series_dir):
    import pydicom

    from medsamkit.dicom.series import index_folder
    from medsamkit.errors import InputError

    folder, files = series_dir
    ds = pydicom.dcmread(files[3])
    ds.PixelData = ds.PixelData[:1000]  # a frame cut short: GDCM fills the missing 99 % with zeros
    ds.save_as(files[3])
    (series,) = index_folder(folder).series.values()
    with pytest.raises(InputError, match=r"IM00003\.dcm is truncated .*1000 of the 100352 bytes"):
        series.read()


def test_number_of_frames_that_is_not_a_number_does_not_crash_the_index(series_dir):
    import pydicom

    from medsamkit.dicom.series import index_folder

    folder, files = series_dir
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(files[5])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds._dict[Tag(0x00280008)] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)  # as a device wrote it
    ds.save_as(folder / "odd.dcm")
    index = index_folder(folder)
    assert "odd.dcm" in [p.name for p in index.corrupt] and "Number of Frames '1A'" in index.corrupt[folder / "odd.dcm"]
    assert len(next(iter(index.series.values())).files) == 23  # the series itself is read as before


def test_duplicate_or_unplaced_slice_is_named_not_blamed_on_the_first_file(tmp_path):
    import pydicom
    from dicom_fixtures import sample_case, write_study

    from medsamkit.errors import InputError
    from medsamkit.recist import load_study

    image, label = sample_case()
    write_study(tmp_path / "s", image, label, every=2, extra_series=False)
    files = sorted((tmp_path / "s" / "series").iterdir())
    ds = pydicom.dcmread(files[7])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "s" / "series" / "copy_of_7.dcm")  # a second slice at slice 7's position
    with pytest.raises(InputError) as exc:
        load_study(tmp_path / "s")
    text = str(exc.value)
    assert "same position" in text and "copy_of_7.dcm" in text and "damaged" not in text
    (tmp_path / "s" / "series" / "copy_of_7.dcm").unlink()
    ds = pydicom.dcmread(files[9])
    del ds.ImagePositionPatient
    ds.save_as(files[9])  # a slice without a position: the series has a gap there
    with pytest.raises(InputError) as exc:
        load_study(tmp_path / "s")
    text = str(exc.value)
    assert "uneven slice gaps" in text and files[9].name in text and "no Image Position" in text
    assert "damaged" not in text


def test_nan_in_a_float_nifti_is_seen_and_refused_like_nrrd(tmp_path, capsys):
    import SimpleITK as sitk

    from medsamkit.io import read_image

    arr = np.random.default_rng(0).uniform(0, 100, (12, 40, 48)).astype(np.float32)
    arr[5, 30, 31] = np.nan
    arr[7, 1, 2] = -np.inf
    for name in ("v.nii.gz", "v.nii", "v.nrrd"):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / name), name.endswith(".gz"))
        back = read_image(tmp_path / name).array
        assert np.isnan(back[5, 30, 31]) and np.isneginf(back[7, 1, 2]), name  # ITK alone reads 0 from NIfTI
        assert np.array_equal(np.isfinite(back), np.isfinite(arr))
        rc, err = _main(["propagate", tmp_path / name, "--slice", 5, "--box", 10, 10, 30, 30,
                         "--out", tmp_path / "m.seg.nrrd"], capsys)
        assert rc == 2 and "2 NaN or infinite voxels" in err and "voxel IJK (31, 30, 5)" in err, (name, err)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.float64)), str(tmp_path / "d.nii.gz"), True)
    assert np.array_equal(np.isfinite(read_image(tmp_path / "d.nii.gz").array), np.isfinite(arr))  # float64 too


# ---------------------------------------------------------------------------------------------------------
# RECIST
# ---------------------------------------------------------------------------------------------------------
def _scoords(items):
    for it in items or []:
        if str(it.get("ValueType", "")) == "SCOORD":
            yield it
        yield from _scoords(it.get("ContentSequence"))


def test_recist_reports_a_dropped_line_on_the_row_and_in_the_summary(tmp_path, capsys):
    """Lesions measured on one slice whose long axis is damaged (zero length; 3 numbers in GraphicData):
    segmented from the short axis, and the dropped line is said on the row, in lesions.json and on stdout."""
    import pydicom
    from dicom_fixtures import sample_case, write_study

    from medsamkit.cli.commands import main
    from medsamkit.dicom.sr_write import write_linear_report
    from medsamkit.markers import Marker

    image, label = sample_case()
    series, markers = write_study(tmp_path / "s", image, label, every=2, extra_series=False)
    long_, short = [m for m in markers if m.name.endswith("_10")]
    zero = Marker(long_.start_ras, long_.start_ras, long_.name)
    write_linear_report([("T1", [zero, short]), ("T2", [long_, short])], series, tmp_path / "s" / "sr.dcm")
    sr = pydicom.dcmread(tmp_path / "s" / "sr.dcm")
    third = list(_scoords(sr.ContentSequence))[2]  # T2's long axis
    third.GraphicData = list(third.GraphicData)[:3]
    sr.save_as(tmp_path / "s" / "sr.dcm")

    out = tmp_path / "out"
    assert main(["recist", str(tmp_path / "s"), "--out", str(out), "--engine", "torch", "--device", "cpu",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "s" / "lesions.json").read_text())
    rows = {r["lesion"]: r for r in summary["lesions"]}
    for name, why in (("T1", "same point"), ("T2", "has 1 point")):
        assert rows[name]["status"] == "ok"
        assert "Left out" in rows[name]["message"] and why in rows[name]["message"]  # on the row ...
        assert "Measured on slice 10 only" in rows[name]["message"]                 # ... with the propagation note
        assert any(f"lesion '{name}'" in w and why in w for w in summary["warnings"])  # ... and in the summary
        assert f"lesion '{name}'" in text and "warning:" in text
    # the reader's long axis stays the length the SR records for it, not the short axis
    assert rows["T2"]["reader_long_mm"] == pytest.approx(long_.length_mm, abs=0.011) and long_.length_mm > short.length_mm
    assert rows["T1"]["reader_long_mm"] == pytest.approx(short.length_mm, abs=0.011)  # a zero-length line measures nothing


def test_recist_out_in_a_read_only_folder_is_refused_before_the_model(tmp_path, capsys, readonly_dir):
    from dicom_fixtures import sample_case, write_study

    image, label = sample_case()
    write_study(tmp_path / "s", image, label, every=2, extra_series=False)
    t0 = time.perf_counter()
    rc, err = _main(["recist", tmp_path / "s", "--out", readonly_dir / "out", "--quiet", "--model", "no-such-model"],
                    capsys)
    assert rc == 2 and "Cannot create the folder" in err and len(err.strip().splitlines()) == 1
    rc, err = _main(["recist", tmp_path / "s", "--out", readonly_dir, "--quiet", "--model", "no-such-model"], capsys)
    assert rc == 2 and "Cannot write" in err and "writable" in err
    assert time.perf_counter() - t0 < 30


def test_partial_study_folders_of_a_killed_run_are_cleaned(tmp_path):
    """kill -9 inside write_study leaves .NAME.<pid>-XXXX.partial/; the next write of that study removes it."""
    from medsamkit.io import STALE_PARTIAL_S, partial_dir

    target = tmp_path / "out" / "study1"
    code = ("import os, sys; from medsamkit.io import partial_dir; d = partial_dir(sys.argv[1]); "
            "open(os.path.join(d, 'seg.dcm'), 'w').write('x'); os.kill(os.getpid(), 9)")
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    subprocess.run([sys.executable, "-c", code, str(target)], env=env, timeout=120)
    (killed,) = [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".partial")]
    old_style = tmp_path / "out" / ".study1.abc123.partial"  # no process id: removed once it is old
    old_style.mkdir()
    os.utime(old_style, (time.time() - STALE_PARTIAL_S - 5,) * 2)
    young = tmp_path / "out" / ".study1.def456.partial"
    young.mkdir()
    mine = partial_dir(tmp_path / "out" / "study2")  # another study's live partial folder is kept
    fresh = partial_dir(target)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert killed.name not in left and old_style.name not in left
    assert young.name in left and mine.name in left and fresh.name in left
