"""Image/volume I/O keeps geometry; mask writing is atomic; unreadable inputs give clear errors."""
import numpy as np
import pytest
import SimpleITK as sitk

from medsamkit.errors import InputError
from medsamkit.io import ImageData, atomic_output, read_image, write_mask


def _oblique_volume(tmp_path, suffix=".nii.gz"):
    arr = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 1.3, 4.0))
    img.SetOrigin((10.0, -20.0, 33.0))
    c, s = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(img, str(path))
    return path, arr, img


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_survives_a_round_trip(tmp_path, suffix):
    path, arr, img = _oblique_volume(tmp_path, suffix)
    data = read_image(path)
    assert data.is_3d and np.array_equal(data.array, arr)
    mask = (arr % 3 == 0).astype(np.uint8)
    out = write_mask(mask, tmp_path / f"mask{suffix}", reference=data)
    back = sitk.ReadImage(str(out))
    assert np.array_equal(sitk.GetArrayFromImage(back), mask)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-5)  # NIfTI stores float32
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-5)


def test_png_read_and_mask_write(tmp_path, test_data):
    data = read_image(test_data / "IMD030.img.png")
    assert data.is_rgb and data.array.ndim == 3 and not data.is_3d
    mask = np.zeros(data.array.shape[:2], bool)
    mask[5:20, 7:30] = True
    out = write_mask(mask, tmp_path / "m.png", reference=data)
    back = read_image(out).array
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255} and ((back > 0) == mask).all()


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_kept_when_a_write_fails(tmp_path):
    target = tmp_path / "mask.png"
    target.write_bytes(b"old")
    with pytest.raises(InputError):
        write_mask(np.zeros((4, 4, 4), np.uint8), target)  # 3D cannot be a PNG
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_mask_shape_must_match_reference(tmp_path):
    ref = ImageData(np.zeros((3, 4, 5), np.int16), (1, 1, 1), (0, 0, 0), tuple(np.eye(3).ravel()))
    with pytest.raises(InputError, match="does not match"):
        write_mask(np.zeros((3, 4, 6), np.uint8), tmp_path / "m.nii.gz", reference=ref)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("content,name", [(b"not an image", "broken.nii.gz"), (b"\x89PNG garbage", "broken.png")])
def test_unreadable_files(tmp_path, content, name):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError, match="Cannot read"):
        read_image(p)


def test_missing_and_4d_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.nii.gz")
    img4 = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False)
    p = tmp_path / "t.nii.gz"
    sitk.WriteImage(img4, str(p))
    with pytest.raises(InputError, match="4D"):
        read_image(p)
