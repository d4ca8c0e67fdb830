"""A study folder: several series, nested, files in any order, non-DICOM and damaged files beside them."""
from __future__ import annotations

import numpy as np
import pytest
from dicom_fixtures import REPO, sample_case

from medsamkit.errors import InputError
from medsamkit.geometry import VolumeGeometry
from medsamkit.io import read_image

pytest.importorskip("highdicom")
from series_writer import write_image_series  # noqa: E402
from medsamkit.dicom.series import index_folder  # noqa: E402


def test_two_series_any_order_read_back_exactly(tmp_path):
    ct, _ = sample_case()
    mr = read_image(REPO / "Testing" / "Data" / "brain1.img.nii.gz")  # left-handed NIfTI frame
    rng = np.random.default_rng(3)
    write_image_series(ct, tmp_path / "a" / "deep", "CT", file_order=rng.permutation(ct.array.shape[0]))
    write_image_series(mr, tmp_path / "b", "MR", file_order=rng.permutation(mr.array.shape[0]))
    (tmp_path / "notes.txt").write_text("not DICOM")
    index = index_folder(tmp_path)
    assert len(index.series) == 2 and not index.corrupt
    by_mod = {s.modality: s for s in index.series.values()}
    v = by_mod["CT"].read()
    assert np.array_equal(v.array, ct.array) and v.modality == "CT"
    np.testing.assert_allclose(v.spacing, ct.spacing, atol=1e-6)
    np.testing.assert_allclose(v.origin, ct.origin, atol=1e-4)
    np.testing.assert_allclose(v.direction, ct.direction, atol=1e-6)
    # MR: sorted along row x column, so k runs opposite to the NIfTI's; every voxel sits at the same point
    m = by_mod["MR"].read()
    g_src, g_dcm = VolumeGeometry.from_image(mr), VolumeGeometry.from_image(m)
    assert np.array_equal(m.array, mr.array[::-1])
    for ijk in ([0, 0, 0], [10, 20, 3], [255, 255, 24]):
        ras = g_src.ijk_to_ras_points(ijk)
        back = g_dcm.ras_to_ijk_points(ras)[0]
        np.testing.assert_allclose(back, [ijk[0], ijk[1], mr.array.shape[0] - 1 - ijk[2]], atol=1e-4)
    k = by_mod["MR"].slice_of(by_mod["MR"].headers[7].SOPInstanceUID)
    assert k == 7 and index.series_of_instance(by_mod["CT"].sop_uids[3]) is by_mod["CT"]


def test_damaged_and_irregular_series(tmp_path):
    ct, _ = sample_case()
    files = write_image_series(ct, tmp_path / "s", "CT")
    # a truncated file in the series: the pixels cannot be read, the message names the file
    files[5].write_bytes(files[5].read_bytes()[:2000])
    index = index_folder(tmp_path)
    (series,) = index.series.values()
    with pytest.raises(InputError, match="IM00005.dcm"):
        series.read()
    # a header cut short: listed as damaged, with the file's name
    files[6].write_bytes(files[6].read_bytes()[:300])
    index = index_folder(tmp_path)
    assert files[6] in index.corrupt
    # a missing slice: uneven gaps are refused with what to do
    files[9].unlink()
    files[6].unlink()
    index = index_folder(tmp_path)
    assert not index.series and not index.corrupt  # an irregular series is not a damaged file
    assert any("uneven slice gaps" in why for _uids, why in index.rejected.values())


def test_missing_folder():
    with pytest.raises(InputError, match="Study folder not found"):
        index_folder("does/not/exist")
