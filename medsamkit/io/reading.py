"""Reading images and volumes with their geometry.

3D: SimpleITK (NIfTI, NRRD, MHA/MHD, a DICOM series folder). 2D: PNG/JPEG/TIFF/BMP via Pillow.
Arrays follow SimpleITK's numpy order: a volume is ``[k, j, i]`` = (z, y, x); a 2D image is
``[row, col]`` (plus a trailing channel axis for colour). Geometry is kept as SimpleITK gives it
(LPS physical space): ``spacing``/``origin`` in (x, y, z) order, ``direction`` a row-major d×d
matrix.
"""
from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..file_checks import check_nifti_complete, nifti_nonfinite
from .atomic import _why
from .formats import IMAGE_2D_SUFFIXES, suffix_of

#: Largest 2D image read (pixels): 16k x 16k. Pillow's own bomb limit is ~179 M pixels.
MAX_2D_PIXELS = 1 << 28


@dataclass
class ImageData:
    """An image with geometry. array: (z, y, x) for 3D, (y, x) or (y, x, 3) for 2D."""

    array: np.ndarray
    spacing: tuple = (1.0, 1.0)
    origin: tuple = (0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 1.0)
    is_rgb: bool = False
    modality: str | None = None
    path: str | None = None

    @property
    def is_3d(self) -> bool:
        return self.array.ndim == 3 and not self.is_rgb



def read_image(path: "str | os.PathLike") -> ImageData:
    """Read a 2D image or a 3D volume (file, or folder holding one DICOM series).

    Raises InputError for missing/unreadable files, 4D images or vector volumes.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Input not found: {path}")
    suf = suffix_of(path)
    if path.is_file() and suf in IMAGE_2D_SUFFIXES:
        return _read_2d(path)
    import SimpleITK as sitk

    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"{path} is a folder but holds no DICOM series.")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            reader.MetaDataDictionaryArrayUpdateOn()
            img = reader.Execute()
            if reader.HasMetaDataKey(0, "0008|0060"):  # modality lets 'auto' choose a CT window
                img.SetMetaData("0008|0060", reader.GetMetaData(0, "0008|0060"))
        else:
            if suf in (".nii", ".nii.gz"):
                check_nifti_complete(path)
            img = sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as exc:
        raise InputError(f"Cannot read {path}: {str(exc).strip().splitlines()[-1][:200]}. "
                         "Supported: NIfTI, NRRD, MHA/MHD, a DICOM series folder, PNG/JPEG/TIFF.") from exc
    if img.GetDimension() == 4:
        raise InputError(f"{path} is a 4D image (size {img.GetSize()}); extract one 3D volume first.")
    if img.GetNumberOfComponentsPerPixel() > 1:
        if img.GetDimension() == 2 and img.GetNumberOfComponentsPerPixel() in (3, 4):
            arr = sitk.GetArrayFromImage(img)[..., :3]
            return ImageData(arr, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()),
                             is_rgb=True, path=str(path))
        raise InputError(f"{path} has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a scalar volume.")
    arr = sitk.GetArrayFromImage(img)
    if suf in (".nii", ".nii.gz") and path.is_file() and np.issubdtype(arr.dtype, np.floating):
        _restore_nonfinite(path, arr)
    modality = None
    with contextlib.suppress(Exception):
        modality = img.GetMetaData("0008|0060").strip() or None
    return ImageData(arr, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()),
                     modality=modality, path=str(path))


def _restore_nonfinite(path: Path, arr: np.ndarray) -> None:
    """Put back the NaN/Inf voxels that ITK's NIfTI reader turns into 0, so the one NaN rule sees them."""
    try:
        where, values = nifti_nonfinite(path)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"Cannot read {path}: {_why(exc)}.") from exc
    if where.size and int(where.max()) < arr.size:
        arr.reshape(-1)[where] = values.astype(arr.dtype)


def _read_2d(path: Path) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_2D_PIXELS:  # a header can declare any size; refuse before decoding it
                raise InputError(f"{path} declares {w} x {h} pixels ({w * h / 1e6:.0f} megapixels), more than the "
                                 f"{MAX_2D_PIXELS / 1e6:.0f} megapixels medsamkit reads from a 2D image. Crop or "
                                 "downscale it first.")
            if im.mode in ("RGBA", "P", "CMYK", "LA"):
                im = im.convert("RGB")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"Cannot read image {path}: {exc}") from exc
    is_rgb = arr.ndim == 3
    return ImageData(arr, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), is_rgb=is_rgb, path=str(path))

