"""Intensity preprocessing and the model-input transform: the single source of truth for both.

Two stages, as in MedSAM's own pipeline (``pre_CT_MR.py`` then the model's resize):

1. :func:`normalize_to_uint8` turns raw intensities (HU, MR values, 8/16-bit photos) into display
   values 0..255: a CT window (``soft-tissue`` W400/L40, ``lung`` W1500/L-160, ``brain`` W80/L40,
   ``bone`` W1800/L400 or a custom ``W,L``), or a clip to the 0.5–99.5 percentiles of the
   non-zero pixels (MR, US, X-ray, 16-bit RGB) with the zero background kept at 0, or ``none``
   for data that already are 0..255 display values (8-bit PNG/JPEG photos). A grey image is
   repeated to three channels. The caller's array is never modified.
2. :class:`ModelTransform` maps that H×W×3 uint8 image into the model's square input frame
   (resize longest side + pad, or squash; min-max or ImageNet mean/std), and maps prompts
   (XY pixels) into that frame and low-res logits back to H×W. Every coordinate conversion
   between the original image and the model input lives in this class.

Conventions: 2D images are numpy arrays indexed ``[row, col]`` (= ``[y, x]``); prompts are XY
pixel coordinates (x = column, y = row), boxes ``[x0, y0, x1, y1]`` inclusive pixel corners as
in segment-anything.

Design note: for a 3D volume the percentile range is computed once over the whole volume
(:func:`resolve_normalization`) so that every slice of a volume gets the same mapping — the
same choice as MedSAM's volume preprocessing; per-slice percentiles flicker between slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConstantImageError, InputError, NonFiniteError

#: CT window presets: name -> (width, level) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft-tissue": (400.0, 40.0),
    "lung": (1500.0, -160.0),
    "brain": (80.0, 40.0),
    "bone": (1800.0, 400.0),
}
PERCENTILES = (0.5, 99.5)
NORMALIZATION_CHOICES = ("auto", "percentile", "none", *WINDOW_PRESETS, "W,L")

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become 0..255.

    mode: ``"range"`` (clip to [low, high] then scale; CT windows and resolved percentiles),
    ``"percentile"`` (resolved on the data it is applied to), or ``"none"`` (already 0..255).
    keep_zero: pixels that are exactly 0 in the input stay 0 (MedSAM's rule for MR backgrounds).
    """

    mode: str
    low: float | None = None
    high: float | None = None
    keep_zero: bool = False
    label: str = ""

    @property
    def key(self) -> str:
        """Stable text used in embedding-cache keys."""
        if self.mode == "range":
            return f"range:{self.low:.6g}:{self.high:.6g}:{int(self.keep_zero)}"
        return self.mode

    @staticmethod
    def window(width: float, level: float, label: str = "") -> "Normalization":
        if not (np.isfinite(width) and np.isfinite(level)) or width <= 0:
            raise InputError(f"CT window width must be a positive number (got W={width}, L={level}).")
        return Normalization("range", level - width / 2.0, level + width / 2.0, False, label or f"W{width:g}/L{level:g}")


def parse_normalization(spec: "str | Normalization | None") -> Normalization:
    """Parse a user option: a preset name, ``"W,L"``, ``"percentile"``, ``"none"`` or ``"auto"``.

    ``auto`` resolves later (:func:`resolve_normalization`) from the data. Raises
    :class:`InputError` for anything else, listing the valid choices.
    """
    if isinstance(spec, Normalization):
        return spec
    text = (spec or "auto").strip().lower().replace("_", "-").replace(" ", "-")
    if text in ("soft-tissue", "softtissue", "soft", "abdomen"):
        text = "soft-tissue"
    if text in WINDOW_PRESETS:
        width, level = WINDOW_PRESETS[text]
        return Normalization.window(width, level, label=text)
    if text in ("auto", "percentile", "none"):
        return Normalization(text, label=text)
    parts = text.replace("/", ",").split(",")
    if len(parts) == 2:
        try:
            width, level = float(parts[0]), float(parts[1])
        except ValueError:
            pass
        else:
            return Normalization.window(width, level)
    raise InputError(
        f"Unknown window/normalisation '{spec}'. Use one of {', '.join(NORMALIZATION_CHOICES)} "
        "(e.g. '400,40' for a custom CT window of width 400 HU and level 40 HU)."
    )


def looks_like_ct(data: np.ndarray) -> bool:
    """Heuristic used by ``auto``: CT in Hounsfield units has air near -1000 HU."""
    if data.dtype == np.uint8:
        return False
    finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
    return finite.size > 0 and float(finite.min()) <= -500.0 and float(finite.max()) >= 0.0


def resolve_normalization(spec: "str | Normalization | None", data: np.ndarray,
                          modality: str | None = None) -> Normalization:
    """Turn ``auto``/``percentile`` into a fixed mapping computed on ``data`` (a slice or a volume).

    auto: modality CT (or HU-like data) -> soft-tissue window; uint8 data -> none (already display
    values); otherwise percentile. Percentiles are taken over the non-zero values when at least
    1% are non-zero (MedSAM), else over all values.
    """
    norm = parse_normalization(spec)
    check_finite(data)  # one rule for NaN/Inf everywhere, whatever the window: refused, never blanked
    if norm.mode == "auto":
        mod = (modality or "").upper()
        if mod == "CT" or (not mod and looks_like_ct(data)):
            return parse_normalization("soft-tissue")
        if data.dtype == np.uint8:
            return Normalization("none", label="none")
        norm = Normalization("percentile", label="percentile")
    if norm.mode != "percentile":
        return norm
    values = data.reshape(-1)
    nonzero = values[values != 0]
    sample = nonzero if nonzero.size >= max(1, values.size // 100) else values
    if sample.size > 2_000_000:  # percentiles of a 2M-value sample are within 0.1% of exact
        rng = np.random.default_rng(0)
        sample = rng.choice(sample, 2_000_000, replace=False)
    low, high = np.percentile(sample.astype(np.float64), PERCENTILES)
    if high <= low:
        high = low + 1e-6
    return Normalization("range", float(low), float(high), keep_zero=nonzero.size > 0, label="percentile")


def check_finite(data: np.ndarray, is_volume: bool | None = None) -> None:
    """Refuse NaN/Inf values (NonFiniteError naming how many and where the first one is).

    The one rule for non-finite data everywhere (2D images, volumes, single slices of a 3D job):
    medsamkit does not guess a value for them, so a volume with one NaN voxel is refused as a whole
    instead of a slice being silently left empty. is_volume: name the position as voxel IJK (default:
    a 3D array whose last axis is not a colour axis).
    """
    if not np.issubdtype(data.dtype, np.floating):
        return
    bad = ~np.isfinite(data)
    if not bad.any():
        return
    count = int(np.count_nonzero(bad))
    first = [int(v) for v in np.unravel_index(int(np.argmax(bad)), data.shape)]
    value = float(data[tuple(first)])
    if is_volume is None:
        is_volume = data.ndim == 3 and data.shape[-1] not in (3, 4)
    if is_volume:
        where = f"voxel IJK ({first[2]}, {first[1]}, {first[0]})"
        thing, unit = "volume", "voxel"
    else:
        where = f"pixel x={first[1]}, y={first[0]}"
        thing, unit = "image", "pixel"
    raise NonFiniteError(
        f"The {thing} holds {count} NaN or infinite {unit}{'s' if count != 1 else ''} (the first, {value}, at "
        f"{where}). medsamkit does not guess values for them: replace them "
        "(e.g. with the background value) before segmenting.")


def validate_image(image: np.ndarray) -> np.ndarray:
    """Check a 2D grey (H, W) or colour (H, W, 3|4) image; returns it as an array (RGBA -> RGB view)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InputError(
            f"Expected a 2D image of shape (H, W) or (H, W, 3), got shape {arr.shape}. For a 3D volume choose a "
            "slice (--slice K --axis axial|coronal|sagittal); 4D data (time/channels) must be split first."
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"The image is empty or a single line (shape {arr.shape}); nothing to segment.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"Image data type {arr.dtype} is not numeric.")
    check_finite(arr, is_volume=False)
    return arr


def normalize_to_uint8(image: np.ndarray, norm: "str | Normalization | None" = "auto",
                       modality: str | None = None) -> np.ndarray:
    """Raw 2D image -> new (H, W, 3) uint8 array of display values. Never modifies ``image``.

    Raises InputError for bad shapes, NaNs, or a constant image (nothing to segment).
    """
    arr = validate_image(image)
    norm = resolve_normalization(norm, arr, modality)
    if norm.mode == "none":
        if arr.dtype != np.uint8:
            if arr.min() < 0 or arr.max() > 255:
                raise InputError("Normalisation 'none' needs values in 0..255; choose 'percentile' or a CT window.")
        out = arr.astype(np.uint8, copy=True)
    else:
        data = arr.astype(np.float32, copy=True)
        scaled = (np.clip(data, norm.low, norm.high) - norm.low) / max(norm.high - norm.low, 1e-8) * 255.0
        if norm.keep_zero:
            scaled[arr == 0] = 0.0
        out = np.rint(scaled).astype(np.uint8)
    if out.max() == out.min():
        raise ConstantImageError(
            f"The image is constant after normalisation '{norm.label or norm.key}' (all pixels {int(out.max())}); "
            "nothing to segment. Check the slice index, or choose another window (e.g. --window lung for lung CT)."
        )
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return out


@dataclass(frozen=True)
class TransformSpec:
    """The per-model input recipe (see shared checkpoint notes for each family's source).

    resize: ``"longest"`` (longest side -> size, keep aspect, zero pad bottom/right) or ``"squash"``.
    interpolation: ``"area"`` | ``"bilinear"`` | ``"cubic"`` | ``"nearest"`` (OpenCV flags).
    pixel_norm: ``"minmax"`` (to [0, 1] over the resized image) or ``"imagenet"`` (mean/std on 0..255).
    normalize_first: apply pixel_norm before resizing (SAM-Med2D) instead of after.
    """

    size: int
    resize: str = "longest"
    interpolation: str = "area"
    pixel_norm: str = "minmax"
    normalize_first: bool = False


class ModelTransform:
    """Original H×W image frame <-> model input frame (size×size). One instance per model."""

    def __init__(self, spec: TransformSpec):
        self.spec = spec

    def resized_hw(self, h: int, w: int) -> tuple[int, int]:
        """Size of the image content inside the model frame (before padding)."""
        s = self.spec.size
        if self.spec.resize == "squash":
            return s, s
        scale = s / max(h, w)  # at least one pixel: a 2 x 2000 image must not become 0 x 256
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def image_to_input(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, size, size) float32 model input.

        LiteMedSAM's uint8 INTER_AREA resize runs in numpy (:func:`medsamkit.fast.resize.resize_area`,
        bit-identical to OpenCV's), so that model needs no OpenCV; the other recipes use OpenCV."""
        h, w = rgb.shape[:2]
        nh, nw = self.resized_hw(h, w)
        if self.spec.interpolation == "area" and not self.spec.normalize_first and rgb.dtype == np.uint8:
            from .fast.resize import resize_area

            img = self._pixel_norm(resize_area(rgb, nw, nh).astype(np.float32))
        else:
            img = self._resize_cv2(rgb, nw, nh)
        out = np.zeros((self.spec.size, self.spec.size, 3), dtype=np.float32)
        out[:nh, :nw] = img
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def _resize_cv2(self, rgb: np.ndarray, nw: int, nh: int) -> np.ndarray:
        try:
            import cv2
        except ImportError as exc:
            from .errors import DependencyError

            raise DependencyError("This model's preprocessing needs OpenCV, which comes with the torch extra: "
                                  'python -m pip install "medsamkit[torch]"') from exc
        flags = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
                 "nearest": cv2.INTER_NEAREST}[self.spec.interpolation]
        if self.spec.normalize_first:  # SAM-Med2D: mean/std on the original, then resize floats
            return cv2.resize(self._pixel_norm(rgb.astype(np.float32)), (nw, nh), interpolation=flags)
        # MedSAM/SAM: resize the uint8 image (as their code does), then normalise
        return self._pixel_norm(cv2.resize(rgb, (nw, nh), interpolation=flags).astype(np.float32))

    def _pixel_norm(self, img: np.ndarray) -> np.ndarray:
        if self.spec.pixel_norm == "imagenet":
            return (img - IMAGENET_MEAN) / IMAGENET_STD
        lo, hi = float(img.min()), float(img.max())
        return (img - lo) / max(hi - lo, 1e-8)

    def coords_to_input(self, xy: np.ndarray, h: int, w: int) -> np.ndarray:
        """(N, 2) XY pixel coordinates of the original image -> model-input XY (float32)."""
        nh, nw = self.resized_hw(h, w)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return (xy * np.array([nw / w, nh / h])).astype(np.float32)

    def box_to_input(self, box: np.ndarray, h: int, w: int) -> np.ndarray:
        """[x0, y0, x1, y1] original pixels -> model-input frame (float32, shape (4,))."""
        return self.coords_to_input(np.asarray(box, dtype=np.float64).reshape(2, 2), h, w).reshape(4)

    def logits_to_original(self, low_res, h: int, w: int):
        """(B, M, L, L) logits in the model frame -> (B, M, h, w) logits on the original grid.

        As in SamPredictor.postprocess_masks / LiteMedSAM: upsample to the input size (if L differs),
        crop the unpadded content, bilinear resize to (h, w). A numpy array is resized by
        :func:`resize_bilinear` (torch's arithmetic, no torch import) and a torch tensor by torch.
        """
        s = self.spec.size
        nh, nw = self.resized_hw(h, w)
        if isinstance(low_res, np.ndarray):
            x = np.asarray(low_res, dtype=np.float32)
            if x.shape[-1] != s:
                x = resize_bilinear(x, s, s)
            return resize_bilinear(x[..., :nh, :nw], h, w)
        import torch.nn.functional as F

        if low_res.shape[-1] != s:
            low_res = F.interpolate(low_res, (s, s), mode="bilinear", align_corners=False)
        low_res = low_res[..., :nh, :nw]
        return F.interpolate(low_res, (h, w), mode="bilinear", align_corners=False)


def _linear_taps(n_in: int, n_out: int):
    """Source indices and weights of torch's bilinear, align_corners=False, in float32 as torch computes them.

    The float32 scale times (j + 0.5), minus 0.5, rounded once to float32 (a fused multiply-add, as
    PyTorch's compiled kernel does; exact in float64 before the rounding)."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = (np.float64(scale) * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = src.astype(np.int64)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (np.float32(1.0) - lam1).astype(np.float32), lam1


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 a * b + c rounded once (exact in float64 for float32 inputs, then one rounding)."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """``F.interpolate(x, (h, w), mode="bilinear", align_corners=False)`` for a (..., H, W) float32 array.

    The same taps and weights as PyTorch's CPU kernel and its order of operations (along the width,
    then the height; x0 * w0 + (x1 * w1) as one fused multiply-add): bit-identical to PyTorch 2.x on
    x86-64 (Testing/engine/test_torchfree.py), so masks (logits > 0) agree exactly."""
    x = np.asarray(x, dtype=np.float32)
    r0, r1, rw0, rw1 = _linear_taps(x.shape[-2], h)
    c0, c1, cw0, cw1 = _linear_taps(x.shape[-1], w)
    t = _fma(x[..., c0], cw0, x[..., c1] * cw1)  # (..., H, w)
    return _fma(t[..., r0, :], rw0[:, None], t[..., r1, :] * rw1[:, None])
