"""Reading images/volumes with their geometry and writing masks atomically.

3D: SimpleITK (NIfTI, NRRD, MHA/MHD, a DICOM series folder). 2D: PNG/JPEG/TIFF/BMP via Pillow.
Arrays follow SimpleITK's numpy order: a volume is ``[k, j, i]`` = (z, y, x); a 2D image is
``[row, col]`` (plus a trailing channel axis for colour). Geometry is kept as SimpleITK gives it
(LPS physical space): ``spacing``/``origin`` in (x, y, z) order, ``direction`` a row-major d×d
matrix. Writes go to a temporary file in the target folder that is renamed into place only on
success, so a failure never leaves a partial output file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".png")


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


def suffix_of(path: "str | os.PathLike") -> str:
    name = Path(path).name.lower()
    for suf in (".seg.nrrd", ".nii.gz"):
        if name.endswith(suf):
            return suf
    return Path(name).suffix


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
    modality = None
    with contextlib.suppress(Exception):
        modality = img.GetMetaData("0008|0060").strip() or None
    return ImageData(arr, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()),
                     modality=modality, path=str(path))


def _read_2d(path: Path) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "P", "CMYK", "LA"):
                im = im.convert("RGB")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"Cannot read image {path}: {exc}") from exc
    is_rgb = arr.ndim == 3
    return ImageData(arr, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), is_rgb=is_rgb, path=str(path))


@contextlib.contextmanager
def atomic_output(path: "str | os.PathLike"):
    """Yield a temporary path beside ``path`` (same suffix); rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    suf = suffix_of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suf}", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_mask(mask: np.ndarray, path: "str | os.PathLike", reference: ImageData | None = None) -> Path:
    """Write a binary/label mask atomically.

    .nii.gz/.nii/.nrrd/.mha: uint8 labels with ``reference``'s geometry (mask shape must equal the
    reference array's spatial shape). .png: 2D only, 0/255 for a binary mask (visible in any viewer),
    label values as they are otherwise. Raises InputError for unsupported suffixes or shapes.
    """
    path = Path(path)
    suf = suffix_of(path)
    arr = np.asarray(mask)
    arr = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
    if suf not in MASK_SUFFIXES:
        raise InputError(f"Cannot write a mask as '{suf or path.name}'. Use one of {', '.join(MASK_SUFFIXES)}.")
    if reference is not None:
        ref_shape = reference.array.shape[:2] if reference.is_rgb else reference.array.shape
        if arr.shape != ref_shape:
            raise InputError(f"Mask shape {arr.shape} does not match the image shape {ref_shape}.")
    if suf == ".png":
        if arr.ndim != 2:
            raise InputError("A PNG mask must be 2D; write 3D masks as .nii.gz or .nrrd.")
        from PIL import Image

        out = (arr > 0).astype(np.uint8) * 255 if arr.max() <= 1 else arr.astype(np.uint8)
        with atomic_output(path) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")
        return path
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    if reference is not None and not reference.is_rgb and len(reference.spacing) == arr.ndim:
        img.SetSpacing(reference.spacing)
        img.SetOrigin(reference.origin)
        img.SetDirection(reference.direction)
    with atomic_output(path) as tmp:
        sitk.WriteImage(img, tmp, True)
    return path


def write_overlay_png(image_rgb: np.ndarray, mask: np.ndarray, path: "str | os.PathLike",
                      box=None, color=(255, 64, 64), alpha: float = 0.45) -> Path:
    """Save a (H, W, 3) uint8 image with the mask blended in colour and the box outlined."""
    from PIL import Image, ImageDraw

    out = image_rgb.astype(np.float32).copy()
    m = np.asarray(mask, dtype=bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(pil).rectangle([float(v) for v in box], outline=(64, 255, 64), width=2)
    with atomic_output(path) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)
