"""Writing masks and overlays: each through :func:`~medsamkit.io.atomic.atomic_output`, read back and compared.

A mask is written as uint8 labels with its image's geometry (NIfTI, NRRD, MHA) or as a 2D PNG; an
overlay is the image with the mask blended in and the box outlined.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from .atomic import OutputGroup, atomic_output
from .formats import MASK_SUFFIXES, suffix_of
from .reading import ImageData
from .verify import _verify_png, verify_image_file


def write_mask(mask: np.ndarray, path: "str | os.PathLike", reference: ImageData | None = None,
               group: "OutputGroup | None" = None) -> Path:
    """Write a binary/label mask atomically.

    .nii.gz/.nii/.nrrd/.mha: uint8 labels with ``reference``'s geometry (mask shape must equal the
    reference array's spatial shape). .png: 2D only, 0/255 for a binary mask (visible in any viewer),
    label values as they are otherwise. Raises InputError for unsupported suffixes or shapes,
    OutputError when the file cannot be written. group: write as part of an :class:`OutputGroup`.
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
        with atomic_output(path, verify=lambda tmp: _verify_png(tmp, out), group=group) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")
        return path
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    if reference is not None and not reference.is_rgb and len(reference.spacing) == arr.ndim:
        img.SetSpacing(reference.spacing)
        img.SetOrigin(reference.origin)
        img.SetDirection(reference.direction)
    expected = arr.astype(np.uint8)
    with atomic_output(path, verify=lambda tmp: verify_image_file(tmp, expected), group=group) as tmp:
        sitk_write(img, tmp)
    return path


def sitk_write(img, path: str) -> None:
    """sitk.WriteImage (compressed), its RuntimeError turned into an OutputError with the reason."""
    import SimpleITK as sitk

    try:
        sitk.WriteImage(img, str(path), True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise OutputError(f"the image writer failed ({lines[-1][:160] if lines else 'no reason given'}).") from exc


def write_overlay_png(image_rgb: np.ndarray, mask: np.ndarray, path: "str | os.PathLike",
                      box=None, color=(255, 64, 64), alpha: float = 0.45, group: "OutputGroup | None" = None) -> Path:
    """Save a (H, W, 3) uint8 image with the mask blended in colour and the box outlined."""
    from PIL import Image, ImageDraw

    out = image_rgb.astype(np.float32).copy()
    m = np.asarray(mask, dtype=bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(pil).rectangle([float(v) for v in box], outline=(64, 255, 64), width=2)
    expected = np.asarray(pil)
    with atomic_output(path, verify=lambda tmp: _verify_png(tmp, expected), group=group) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)
