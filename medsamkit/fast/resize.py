"""OpenCV's ``INTER_AREA`` resize of a uint8 image, in numpy, bit for bit.

LiteMedSAM's preprocessing shrinks the image with ``cv2.resize(..., interpolation=cv2.INTER_AREA)``;
:func:`resize_area` gives the same uint8 values without OpenCV, so the torch-free install does not
need it. It follows OpenCV's ``resizeArea_`` arithmetic: per output pixel the source cells it covers,
weighted by the covered fraction (float32 weights from double edges), summed in float32 along a row
(in source order), then over the rows (in source order), rounded half to even. Integer factors take
OpenCV's fast path: a 2 x 2 block is ``(sum + 2) >> 2``, a k x k block ``round(sum * float32(1 / k²))``.
Enlarging (a side shorter than the target) is OpenCV's bilinear variant for INTER_AREA: per axis the
source index ``floor(d * scale)`` and weight from the pixel edges, 11-bit fixed-point weights, and the
rounding of its vector code (:func:`_enlarge`).
"""
from __future__ import annotations

import math

import numpy as np

_EPS = 2.220446049250313e-16  # DBL_EPSILON


def _area_tab(ssize: int, dsize: int, scale: float) -> list[list[tuple[int, np.float32]]]:
    """Per output index, its (source index, float32 weight) list, as OpenCV's computeResizeAreaTab."""
    tab = []
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, ssize - 1)
        sx1 = min(sx1, sx2)
        row = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, np.float32((sx1 - fsx1) / cell)))
        for sx in range(sx1, sx2):
            row.append((sx, np.float32(1.0 / cell)))
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)))
        tab.append(row)
    return tab


def _sum_tab(src: np.ndarray, tab: list, axis: int) -> np.ndarray:
    """float32 sums along ``axis`` of ``src`` with the weights of ``tab``, in the table's order."""
    width = max(len(r) for r in tab)
    n = len(tab)
    idx = np.zeros((width, n), np.intp)
    w = np.zeros((width, n), np.float32)
    for d, row in enumerate(tab):
        for k, (s, a) in enumerate(row):
            idx[k, d], w[k, d] = s, a
    shape = [1] * src.ndim
    shape[axis] = n
    out = None
    for k in range(width):
        term = np.take(src, idx[k], axis=axis).astype(np.float32) * w[k].reshape(shape)
        out = term if out is None else out + term  # a zero weight adds +0.0: the same float32 sum
    return out


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)`` of a uint8 (H, W[, C]) image."""
    if img.dtype != np.uint8:
        raise TypeError("resize_area takes a uint8 image")
    h, w = img.shape[:2]
    scale_x, scale_y = 1.0 / (width / w), 1.0 / (height / h)
    if scale_x < 1 or scale_y < 1:
        return _enlarge(img, width, height)
    ix, iy = int(round(scale_x)), int(round(scale_y))
    if abs(scale_x - ix) < _EPS and abs(scale_y - iy) < _EPS:
        acc = np.uint16 if ix * iy * 255 < 2**16 else np.int64  # exact sums either way
        block = np.zeros((height, width, *img.shape[2:]), acc)
        for dy in range(iy):
            for dx in range(ix):
                block += img[dy::iy, dx::ix]
        block = block.astype(np.int64)
        if ix == 2 and iy == 2:
            return ((block + 2) >> 2).astype(np.uint8)
        out = block.astype(np.float32) * np.float32(1.0 / (ix * iy))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    rows = _sum_tab(img, _area_tab(w, width, scale_x), axis=1)
    out = _sum_tab(rows, _area_tab(h, height, scale_y), axis=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _linear_tab(ssize: int, dsize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source index, its neighbour, (2, dsize) int32 weights summing to 2048) per output index."""
    inv = dsize / ssize
    scale = 1.0 / inv
    s0 = np.zeros(dsize, np.intp)
    wts = np.zeros((2, dsize), np.int32)
    for d in range(dsize):
        sx = math.floor(d * scale)
        f = float(np.float32((d + 1) - (sx + 1) * inv))
        f = 0.0 if f <= 0 else float(np.float32(f - math.floor(f)))
        if sx < 0:
            f, sx = 0.0, 0
        if sx >= ssize - 1:
            f, sx = 0.0, ssize - 1
        c0, c1 = np.float32(1.0) - np.float32(f), np.float32(f)
        wts[0, d] = int(np.rint(c0 * np.float32(2048)))
        wts[1, d] = int(np.rint(c1 * np.float32(2048)))
        s0[d] = sx
    return s0, np.minimum(s0 + 1, ssize - 1), wts


def _enlarge(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """The enlarging branch: rows weighted in int32, then the columns as OpenCV's vector code rounds
    them (each product's high 16 bits of the weight times the row sum >> 4, then + 2 >> 2)."""
    h, w = img.shape[:2]
    x0, x1, ax = _linear_tab(w, width)
    y0, y1, ay = _linear_tab(h, height)
    src = img.astype(np.int32)
    extra = (1,) * (img.ndim - 2)
    rows = src[:, x0] * ax[0].reshape(1, -1, *extra) + src[:, x1] * ax[1].reshape(1, -1, *extra)
    r0, r1 = rows[y0], rows[y1]
    b0, b1 = ay[0].reshape(-1, 1, *extra), ay[1].reshape(-1, 1, *extra)
    out = (((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)
