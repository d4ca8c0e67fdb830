"""A DICOM series folder is read as one volume with its geometry."""
import numpy as np
import SimpleITK as sitk

from medsamkit.io import read_image


def test_dicom_series_folder(tmp_path):
    arr = (np.arange(4 * 16 * 20).reshape(4, 16, 20) % 500 - 200).astype(np.int16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(arr.shape[0]):
        sl = sitk.GetImageFromArray(arr[k])
        sl.SetSpacing((0.8, 0.8))
        for tag, value in {"0008|0060": "CT", "0020|000e": "1.2.826.0.1.3680043.2.1125.1.1",
                           "0020|0013": str(k + 1), "0020|0032": f"-10\\-20\\{k * 2.5}",
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": "0.8\\0.8",
                           "0018|0050": "2.5"}.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"s{k:03d}.dcm"))
        writer.Execute(sl)
    img = read_image(tmp_path)
    assert img.is_3d and img.array.shape == (4, 16, 20)
    assert np.array_equal(img.array, arr)
    np.testing.assert_allclose(img.spacing, (0.8, 0.8, 2.5), atol=1e-4)
    np.testing.assert_allclose(img.origin, (-10, -20, 0), atol=1e-4)
    assert img.modality == "CT"
