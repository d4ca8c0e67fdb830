"""Enhanced (multi-frame) CT made with highdicom's Legacy Converted Enhanced CT from a classic series (frames in a
shuffled order): the same voxels and geometry as the classic read, and the RECIST route on it gives the same
masks, with a DICOM SEG that references the image's frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_fixtures import crop_k, run_tool, sample_case, tool, write_study

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from medsamkit.dicom.multiframe import MultiFrameSeries  # noqa: E402
from medsamkit.dicom.series import index_folder  # noqa: E402


def _enhanced(tmp_path):
    image, label = sample_case()
    image, label = crop_k(image, label, 5, 18)
    classic, markers = write_study(tmp_path / "classic", image, label, every=2, extra_series=False)
    datasets = [pydicom.dcmread(f) for f in classic.files]
    datasets = [datasets[n] for n in np.random.default_rng(3).permutation(len(datasets))]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=hd.UID(), series_number=5,
                                                        sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "enhanced").mkdir()
    enhanced.save_as(tmp_path / "enhanced" / "ct.dcm")
    return classic, markers


def test_multiframe_reads_like_the_classic_series(tmp_path):
    classic, _ = _enhanced(tmp_path)
    index = index_folder(tmp_path / "enhanced")
    assert not index.corrupt
    (series,) = index.series.values()
    assert isinstance(series, MultiFrameSeries)
    assert sorted(series.frames) == list(range(1, 14)) and series.frames != list(range(1, 14))  # shuffled frames
    a, b = series.read(), classic.read()
    assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
    assert np.allclose(a.spacing, b.spacing) and np.allclose(a.origin, b.origin)
    assert np.allclose(a.direction, b.direction)
    assert series.geometry.shape == classic.geometry.shape
    for h, c in zip(series.headers, classic.headers):  # every slice k lies where the classic slice k lies
        assert np.allclose(h.ImagePositionPatient, c.ImagePositionPatient)
    assert a.array.min() < -500  # Hounsfield units: the rescale of the functional groups was applied


def test_recist_on_enhanced_study_equals_classic(tmp_path, shared_predictor):
    from medsamkit.backend.local import LocalBackend
    from medsamkit.dicom.sr_write import write_linear_report
    from medsamkit.recist import SEG_FILE, RecistOptions, load_study, segment_study, write_study as write_out

    classic, markers = _enhanced(tmp_path)
    (series,) = index_folder(tmp_path / "enhanced").series.values()
    write_linear_report([("T1", markers)], series, tmp_path / "enhanced" / "sr.dcm")  # SCOORDs name their frames
    sr = pydicom.dcmread(tmp_path / "enhanced" / "sr.dcm")
    assert "Referenced Frame Number" in str(sr)
    backend = LocalBackend(predictor=shared_predictor)
    masks = {}
    for name in ("classic", "enhanced"):
        study = load_study(tmp_path / name)
        (res,) = segment_study(backend, study, RecistOptions())
        assert res.ok, res.message
        write_out(tmp_path / "out" / name, study, [res], {"model": "litemedsam"})
        masks[name] = res.mask
    assert masks["classic"].sum() > 100 and np.array_equal(masks["classic"], masks["enhanced"])
    seg = hd.seg.segread(str(tmp_path / "out" / "enhanced" / SEG_FILE))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    frames = seg.get_pixels_by_source_frame(source_sop_instance_uid=series.sop_uids[0],
                                            source_frame_numbers=series.frames, segment_numbers=[1],
                                            assert_missing_frames_are_empty=True)
    assert np.array_equal(frames[..., 0] > 0, masks["enhanced"] > 0)
    rows = json.loads((tmp_path / "out" / "enhanced" / "lesions.json").read_text())["lesions"]
    assert rows[0]["status"] == "ok" and rows[0]["measured_slices"]
    res = run_tool(tool("dciodvfy"), tmp_path / "out" / "enhanced" / SEG_FILE)  # David Clunie's IOD validator
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors
