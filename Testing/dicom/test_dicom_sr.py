"""TID 1500 reading: our writer round trip to the voxel, reports laid out by other writers (highdicom's
TID 1410 image regions and SCOORD3D lines, dcmqi's tid1500writer, public example files), and every
bad-input case with a message naming the file and the lesion."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from dicom_fixtures import DICOM_DATA, run_tool, sample_case, tool, write_study

from medsamkit.errors import InputError
from medsamkit.markers import Marker

pytest.importorskip("highdicom")
import highdicom as hd  # noqa: E402
from pydicom.sr.codedict import codes  # noqa: E402

from medsamkit.dicom.series import image_point_to_lps, index_folder  # noqa: E402
from medsamkit.dicom.sr import check_has_lines, lesion_markers, read_report, select_series  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    image, label = sample_case()
    series, markers = write_study(folder, image, label, every=2)
    return folder, image, series, markers


def _report(path, groups, series, extra_uids=()):
    evidence = list(series.headers)
    for uid in extra_uids:  # images of another series the report refers to (not in the study folder)
        ds = copy.deepcopy(series.headers[0])
        ds.SOPInstanceUID, ds.SeriesInstanceUID = uid, "1.2.826.0.1.3680043.8.498.1"
        evidence.append(ds)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^One"))),
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups),
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(), instance_number=1)
    sr.save_as(path)
    return path


def _ijk_xy(series, k, xy_pix):
    """Image coordinates of pixel centres (i, j) on slice k, as an SR writer stores them."""
    return np.asarray(xy_pix, dtype=np.float32) + 0.5, series.headers[k]


def test_our_report_reads_back_to_the_voxel(study):
    folder, image, series, markers = study
    report = read_report(folder / "sr.dcm")
    assert [les.name for les in report.lesions] == ["T1"]
    les = report.lesions[0]
    assert les.finding == ("108369006", "SCT", "Neoplasm") and les.finding_site == ("39607008", "SCT", "Lung")
    assert [ln.name for ln in les.lines] == ["Long axis 1", "Short axis 1", "Long axis 2", "Short axis 2"]
    assert select_series(report, index_folder(folder)).uid == series.uid  # not the other series of the folder
    back = lesion_markers(les, series, report.path)
    for a, b, line in zip(markers, back, les.lines):  # lines end on pixel centres: float32 storage keeps them
        np.testing.assert_allclose(a.start_ras, b.start_ras, atol=1e-3)
        np.testing.assert_allclose(a.end_ras, b.end_ras, atol=1e-3)
        assert abs(line.value_mm - a.length_mm) < 1e-2


def test_image_coordinates_agree_with_highdicom_transformer(study):
    """Our SCOORD -> LPS conversion against highdicom's own (independent) implementation."""
    _, _, series, _ = study
    for header in (series.headers[3], series.headers[11]):
        t = hd.spatial.ImageToReferenceTransformer(image_position=header.ImagePositionPatient,
                                                   image_orientation=header.ImageOrientationPatient,
                                                   pixel_spacing=header.PixelSpacing)
        xy = np.array([[0.0, 0.0], [0.5, 0.5], [100.25, 37.75], [223.5, 223.5]])
        np.testing.assert_allclose(image_point_to_lps(header, xy), t(xy), atol=1e-6)


def test_public_highdicom_example_coordinates(study):
    """highdicom's public TID 1500 example: groups, codes and its polygon's corner on its CT image."""
    path = DICOM_DATA / "highdicom_sr_document_with_multiple_groups.dcm"
    report = read_report(path)
    assert [les.name for les in report.lesions] == ["Image0001", "LungNodule0001", "Aorta0001", "Vertebra0001"]
    assert report.lesions[1].finding[2] == "Nodule" and report.lesions[1].finding_site[2] == "Lung"
    assert any("CIRCLE" in s for s in report.other_items) and any("POLYLINE SCOORD" in s and "4 points" in s
                                                                    for s in report.other_items)
    with pytest.raises(InputError, match="no linear measurement") as err:
        check_has_lines(report)
    assert str(path) in str(err.value) and "CIRCLE" in str(err.value)
    import pydicom

    ct = pydicom.dcmread(DICOM_DATA / "highdicom_ct_image.dcm")
    # Aorta polygon corner (25, 45): top-left corner of pixel (24.5, 44.5) -> IPP + offsets
    lps = image_point_to_lps(ct, [[25.0, 45.0]])[0]
    row, col = np.asarray(ct.ImageOrientationPatient[:3], float), np.asarray(ct.ImageOrientationPatient[3:], float)
    expect = np.asarray(ct.ImagePositionPatient, float) + 24.5 * float(ct.PixelSpacing[1]) * row \
        + 44.5 * float(ct.PixelSpacing[0]) * col
    np.testing.assert_allclose(lps, expect, atol=1e-6)


def test_public_dcmqi_example_has_no_lines():
    path = DICOM_DATA / "dcmqi_sr_tid1500_example.dcm"
    report = read_report(path)
    assert [les.name for les in report.lesions] == ["primary tumor"]
    assert report.lesions[0].finding == ("M-80003", "SRT", "Neoplasm, Primary")
    assert report.lesions[0].finding_site == ("T-C5300", "SRT", "pharyngeal tonsil (adenoid)")  # old SRT codes
    with pytest.raises(InputError, match="no linear measurement"):
        check_has_lines(report)


def test_tid1410_image_region_and_scoord3d_lines(study, tmp_path):
    """Two other layouts of a line: a TID 1410 'Image Region' 2-point polyline, a SCOORD3D line."""
    _, _, series, markers = study
    long10 = markers[0]
    ijk = series.geometry.ras_to_ijk_points([long10.start_ras, long10.end_ras])
    k = int(round(ijk[0, 2]))
    header = series.headers[k]
    region = hd.sr.ImageRegion(graphic_type="POLYLINE", graphic_data=(ijk[:, :2] + 0.5).astype(np.float32),
                               source_image=hd.sr.SourceImageForRegion(header.SOPClassUID, header.SOPInstanceUID))
    g1 = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="L-2D"), referenced_region=region,
        finding_type=codes.SCT.Neoplasm,
        measurements=[hd.sr.Measurement(codes.SCT.LongAxis, long10.length_mm, codes.UCUM.Millimeter)])
    lps = (np.diag([-1.0, -1, 1]) @ np.stack([long10.start_ras, long10.end_ras]).T).T
    coords = hd.sr.CoordinatesForMeasurement3D(graphic_type="POLYLINE", graphic_data=lps.astype(np.float32),
                                               frame_of_reference_uid=series.frame_of_reference)
    g2 = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="L-3D"),
        measurements=[hd.sr.Measurement(codes.SCT.LongAxis, long10.length_mm, codes.UCUM.Millimeter,
                                        referenced_coordinates=[coords])])
    path = _report(tmp_path / "layouts.dcm", [g1, g2], series)
    report = read_report(path)
    assert [les.name for les in report.lesions] == ["L-2D", "L-3D"]
    for les in report.lesions:
        (m,) = lesion_markers(les, series, path)
        np.testing.assert_allclose(m.start_ras, long10.start_ras, atol=1e-3)
        np.testing.assert_allclose(m.end_ras, long10.end_ras, atol=1e-3)
    assert report.lesions[1].lines[0].name == "Long axis 1"


def test_bad_lines_name_file_lesion_and_line(study, tmp_path):
    _, _, series, markers = study
    header = series.headers[10]
    src = hd.sr.SourceImageForRegion(header.SOPClassUID, header.SOPInstanceUID)

    def group(name, coords):
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name),
            measurements=[hd.sr.Measurement(codes.SCT.LongAxis, 10.0, codes.UCUM.Millimeter,
                                            referenced_coordinates=[coords])])

    point = hd.sr.CoordinatesForMeasurement("POINT", np.array([[50.0, 60.0]], np.float32), src)
    same = hd.sr.CoordinatesForMeasurement("POLYLINE", np.array([[50, 60], [50, 60]], np.float32), src)
    other_for = hd.sr.CoordinatesForMeasurement3D("POLYLINE", np.array([[0, 0, 0], [10, 0, 0]], np.float32),
                                                  frame_of_reference_uid=hd.UID())
    stranger_uid = hd.UID()
    stranger = hd.sr.CoordinatesForMeasurement("POLYLINE", np.array([[50, 60], [70, 60]], np.float32),
                                               hd.sr.SourceImageForRegion(header.SOPClassUID, stranger_uid))
    path = _report(tmp_path / "bad.dcm", [group("one-point", point), group("same-point", same),
                                          group("other-FoR", other_for), group("elsewhere", stranger)], series,
                   extra_uids=[stranger_uid])
    report = read_report(path)
    expected = {"one-point": "has 1 point", "same-point": "same point", "other-FoR": "Frame of Reference",
                "elsewhere": "not a slice of"}
    for les in report.lesions:
        with pytest.raises(InputError, match=expected[les.name]) as err:
            lesion_markers(les, series, path)
        assert str(path) in str(err.value) and f"lesion '{les.name}'" in str(err.value)


def test_references_not_in_folder_and_not_sr(study, tmp_path):
    folder, _, series, _ = study
    other = index_folder(folder / "other")  # the report's images are not in this folder
    report = read_report(folder / "sr.dcm")
    with pytest.raises(InputError, match="not in") as err:
        select_series(report, other)
    assert str(folder / "sr.dcm") in str(err.value) and "Export the measured series" in str(err.value)
    with pytest.raises(InputError, match="not a DICOM structured report"):
        read_report(series.files[0])
    broken = tmp_path / "broken.dcm"
    broken.write_bytes((folder / "sr.dcm").read_bytes()[:700])
    with pytest.raises(InputError, match="cannot read") as err:
        read_report(broken)
    assert str(broken) in str(err.value)


def test_dcmqi_tid1500writer_report_is_read(study, tmp_path):
    """An SR written by dcmqi (the writer of Slicer's QuantitativeReporting) over our series and SEG:
    groups, tracking identifiers and codes are read; it holds no line, which is a clear error."""
    from medsamkit.dicom.seg import SegmentSpec, write_seg

    folder, image, series, _ = study
    writer = tool("tid1500writer")
    mask = np.zeros(series.geometry.shape, np.uint8)
    mask[10:13, 100:120, 100:120] = 1
    seg = write_seg([SegmentSpec(mask, "T1")], series, tmp_path / "ctx" / "seg.dcm")
    meta = {"SeriesDescription": "Measurements", "SeriesNumber": "1001", "InstanceNumber": "1",
            "compositeContext": ["seg.dcm"], "imageLibrary": [p.name for p in series.files[10:13]],
            "observerContext": {"ObserverType": "PERSON", "PersonObserverName": "Reader1"},
            "VerificationFlag": "VERIFIED", "CompletionFlag": "COMPLETE", "activitySession": "1", "timePoint": "1",
            "Measurements": [{"TrackingIdentifier": "Lesion A", "ReferencedSegment": 1,
                              "SourceSeriesForImageSegmentation": series.uid,
                              "segmentationSOPInstanceUID": str(seg.SOPInstanceUID),
                              "Finding": {"CodeValue": "108369006", "CodingSchemeDesignator": "SCT",
                                          "CodeMeaning": "Neoplasm"},
                              "FindingSite": {"CodeValue": "39607008", "CodingSchemeDesignator": "SCT",
                                              "CodeMeaning": "Lung"},
                              "measurementItems": [{"value": "1.5", "quantity": {"CodeValue": "118565006",
                                                    "CodingSchemeDesignator": "SCT", "CodeMeaning": "Volume"},
                                                    "units": {"CodeValue": "cm3", "CodingSchemeDesignator": "UCUM",
                                                              "CodeMeaning": "cm3"}}]}]}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "dcmqi_sr.dcm"
    res = run_tool(writer, "--inputMetadata", tmp_path / "meta.json", "--inputImageLibraryDirectory",
                   series.files[0].parent, "--inputCompositeContextDirectory", tmp_path / "ctx", "--outputDICOM", out)
    assert res.returncode == 0 and out.is_file(), res.stdout + res.stderr
    report = read_report(out)
    assert [les.name for les in report.lesions] == ["Lesion A"]
    assert report.lesions[0].finding[2] == "Neoplasm" and report.lesions[0].finding_site[2] == "Lung"
    with pytest.raises(InputError, match="no linear measurement"):
        check_has_lines(report)


def test_marker_names_survive_as_axis_concepts(study, tmp_path):
    from medsamkit.dicom.sr_write import write_linear_report

    _, _, series, markers = study
    m = markers[0]
    off = Marker(m.start_ras, m.end_ras + np.array([0.0, 0.0, 5.0]), "long_x")  # crosses slices
    with pytest.raises(InputError, match="not within one slice"):
        write_linear_report([("T9", [off])], series, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_dcmjs_ohif_bidirectional_report_reads_back_to_the_voxel(tmp_path):
    """An SR written by dcmjs (OHIF/Cornerstone's DICOM library, npm) through its Cornerstone 'Bidirectional'
    measurement adapter - the way a reader's RECIST measurement in OHIF reaches PACS. The stored file
    (Testing/Data/dicom, made by dcmjs_bidirectional.js) refers to the sample CT written with fixed UIDs."""
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.simulated_reader import simulate_markers

    from series_writer import write_image_series

    image, label = sample_case()
    write_image_series(image, tmp_path / "ct", "CT", uid_seed="medsamkit-dcmjs-fixture", patient_id="P1")
    (tmp_path / "ct" / "sr.dcm").write_bytes((DICOM_DATA / "dcmjs_bidirectional_sr.dcm").read_bytes())
    index = index_folder(tmp_path / "ct")
    (sr_path,) = index.sr_files
    report = read_report(sr_path)
    check_has_lines(report)
    (les,) = report.lesions  # one tracking identifier for all of the tool's measurements: one lesion
    assert les.name == "cornerstoneTools@^4.0.0:Bidirectional"
    assert les.finding == ("108369006", "SCT", "Neoplasm")
    assert les.finding_site == ("39607008", "SCT", "Lung")  # written under the old SRT concept G-C0E3
    series = select_series(report, index)
    back = lesion_markers(les, series, report.path)
    expected = simulate_markers(label, VolumeGeometry.from_image(image), axis=0, every=1)
    assert len(back) == len(expected) == 6
    for a, b in zip(expected, back):
        np.testing.assert_allclose(a.start_ras, b.start_ras, atol=1e-3)
        np.testing.assert_allclose(a.end_ras, b.end_ras, atol=1e-3)


def test_degenerate_line_beside_valid_ones_is_left_out_with_a_warning(study, tmp_path):
    """The simulated reader on BraTS gives a one-pixel first slice (both axes one point): the lesion keeps
    its valid lines and says which one was left out."""
    _, _, series, markers = study
    header = series.headers[10]
    src = hd.sr.SourceImageForRegion(header.SOPClassUID, header.SOPInstanceUID)
    ijk = series.geometry.ras_to_ijk_points([markers[0].start_ras, markers[0].end_ras])
    good = hd.sr.CoordinatesForMeasurement("POLYLINE", (ijk[:, :2] + 0.5).astype(np.float32), src)
    same = hd.sr.CoordinatesForMeasurement("POLYLINE", np.array([[50, 60], [50, 60]], np.float32), src)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="T1"),
        measurements=[hd.sr.Measurement(codes.SCT.LongAxis, 10.0, codes.UCUM.Millimeter, referenced_coordinates=[good]),
                      hd.sr.Measurement(codes.SCT.ShortAxis, 0.0, codes.UCUM.Millimeter, referenced_coordinates=[same])])
    path = _report(tmp_path / "mixed.dcm", [group], series)
    (les,) = read_report(path).lesions
    notes = []
    (m,) = lesion_markers(les, series, path, notes)
    np.testing.assert_allclose(m.start_ras, markers[0].start_ras, atol=1e-3)
    assert len(notes) == 1 and "Short axis 1" in notes[0] and "same point" in notes[0] and str(path) in notes[0]
