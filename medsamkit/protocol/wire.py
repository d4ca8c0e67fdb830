"""Byte layout of arrays and masks on the wire: the single source of truth for both ends.

Two self-describing frames, all integers little-endian. Both ends decode with a size limit, so a
small malformed or malicious frame can never make the reader allocate more than it agreed to.

**Array frame** (image/volume uploads, mask-prompt logits, logits downloads)::

    offset  size      field
    0       4         magic b"MSKA"
    4       1         WIRE_VERSION (1)
    5       1         codec: 0 none, 1 zlib, 2 zstd
    6       1         dtype code (DTYPE_CODES below)
    7       1         ndim, 1..4
    8       1         filter: 0 none, 1 byte-shuffle (byte b of every element stored together;
                      int16 CT compresses 15-25% smaller and 2x faster with zstd, measured on the
                      bundled lung CT and brain1 MR)
    9       3         reserved, zero
    12      4*ndim    shape, uint32 each, C order
    ..      rest      payload: codec(filter(C-order little-endian element bytes))

The decompressed payload size is implied by shape and dtype (no separate length to trust). A
writer stores the payload uncompressed (codec 0) whenever compression would not make it smaller.

**Mask frame** (predicted masks; only the bounding box of the foreground travels)::

    offset  size      field
    0       4         magic b"MSKM"
    4       1         WIRE_VERSION (1)
    5       1         codec: 0 none, 1 zlib, 2 zstd
    6       1         ndim, 2 or 3
    7       1         reserved, zero
    8       4*ndim    full shape (uint32 each)
    ..      4*ndim    ROI start per axis (inclusive)
    ..      4*ndim    ROI stop per axis (exclusive); an empty mask has start == stop == 0
    ..      rest      payload: codec(numpy.packbits(roi.ravel(), bitorder="little")), the ROI in
                      C order, ceil(roi.size / 8) bytes before compression

A 512x512 mask with a 150x150 lesion travels as ~0.3-1 KB instead of 256 KB (uint8) or 32 KB
(bit-packed full frame); the client rebuilds the full-size boolean mask.

Codecs: zstd (package ``zstandard``) when both ends have it, else zlib (standard library); a
client lists what it can read in the ``X-MedSAMKit-Codecs`` header (see medsamkit/protocol/__init__.py).
"""
from __future__ import annotations

import json
import re
import struct
import zlib

import numpy as np

from ..errors import MedSAMError
from . import MAX_JSON_DEPTH, MAX_META_BYTES, META_HEADER

WIRE_VERSION = 1
ARRAY_MAGIC = b"MSKA"
MASK_MAGIC = b"MSKM"

CODEC_NONE, CODEC_ZLIB, CODEC_ZSTD = 0, 1, 2
CODEC_NAMES = {"none": CODEC_NONE, "zlib": CODEC_ZLIB, "zstd": CODEC_ZSTD}
FILTER_NONE, FILTER_SHUFFLE = 0, 1

DTYPE_CODES = {
    np.dtype(np.bool_): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3, np.dtype("<u2"): 4,
    np.dtype("<i2"): 5, np.dtype("<u4"): 6, np.dtype("<i4"): 7, np.dtype("<f4"): 8, np.dtype("<f8"): 9,
    np.dtype("<f2"): 10, np.dtype("<i8"): 11, np.dtype("<u8"): 12,
}
CODE_DTYPES = {code: dt for dt, code in DTYPE_CODES.items()}

_ARRAY_HEAD = struct.Struct("<4sBBBBB3x")   # 12 bytes
_MASK_HEAD = struct.Struct("<4sBBBx")       # 8 bytes
ZSTD_LEVEL = 3  # level 3: 1.3 ms per 512² RGB slice on one core; higher levels cost 5x for ~5% bytes


class WireError(MedSAMError):
    """A frame is malformed (maps to HTTP 422)."""


class WireTooLarge(WireError):
    """A frame declares more data than the reader accepts (maps to HTTP 413)."""


def zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def available_codecs() -> list[str]:
    """Codec names this process can read and write, best first."""
    return (["zstd"] if zstd_available() else []) + ["zlib", "none"]


def choose_codec(accepted: "str | list[str] | None") -> int:
    """Best codec both ends have. ``accepted``: comma list or names from the peer (None = zlib)."""
    if isinstance(accepted, str):
        accepted = [c.strip().lower() for c in accepted.split(",")]
    names = accepted or ["zlib"]
    for name in available_codecs():
        if name in names:
            return CODEC_NAMES[name]
    return CODEC_NONE


def _pack(data: bytes, codec: int) -> tuple[int, bytes]:
    """(codec actually used, payload): stored uncompressed when compression would not make it smaller
    (tiny masks: a zstd frame header costs ~10 bytes)."""
    packed = _compress(data, codec)
    return (codec, packed) if len(packed) < len(data) else (CODEC_NONE, bytes(data))


def _compress(data: bytes, codec: int) -> bytes:
    if codec == CODEC_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if codec == CODEC_ZLIB:
        return zlib.compress(data, 1)  # level 1: zlib's higher levels gain little on masks/images here
    if codec == CODEC_NONE:
        return bytes(data)
    raise WireError(f"Unknown codec {codec}.")


def _decompress(payload: bytes, codec: int, expected: int) -> bytes:
    """Decompress exactly ``expected`` bytes; more or fewer is a WireError (no bomb can inflate)."""
    try:
        if codec == CODEC_NONE:
            out = bytes(payload)
        elif codec == CODEC_ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(payload, expected + 1)
            if len(out) <= expected and not d.eof:  # the stream must end (and its checksum match) here
                raise WireError("Compressed payload is truncated.")
        elif codec == CODEC_ZSTD:
            try:
                import zstandard
            except ImportError as exc:
                raise WireError("This frame is zstd-compressed but the package 'zstandard' is missing here; "
                                "install it with: python -m pip install zstandard") from exc
            # A stream reader honours the read size; ZstdDecompressor.decompress() would trust the
            # frame's own content-size field and allocate whatever it says.
            with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
                out = reader.read(expected + 1)
        else:
            raise WireError(f"Unknown codec {codec} in frame.")
    except (zlib.error, ValueError) as exc:
        raise WireError(f"Corrupt compressed payload: {exc}") from exc
    except Exception as exc:  # zstandard.ZstdError has no stable import path across versions
        if isinstance(exc, WireError):
            raise
        raise WireError(f"Corrupt compressed payload: {exc}") from exc
    if len(out) != expected:
        raise WireError(f"Payload decompresses to {len(out)}{'+' if len(out) > expected else ''} bytes; "
                        f"the header declares {expected}.")
    return out


def _shuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(itemsize, -1).T.tobytes()


def encode_array(arr: np.ndarray, codec: int = CODEC_ZLIB) -> bytes:
    """Any array of a DTYPE_CODES type with 1..4 axes -> array frame bytes."""
    arr = np.asarray(arr)
    le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    dt = np.dtype(le)
    if dt not in DTYPE_CODES:
        raise WireError(f"Arrays of type {arr.dtype} cannot be sent; convert to one of "
                        f"{', '.join(sorted(str(d) for d in DTYPE_CODES))}.")
    if not 1 <= arr.ndim <= 4 or any(s >= 2**32 for s in arr.shape):
        raise WireError(f"Arrays of shape {arr.shape} cannot be sent (1..4 axes, each < 2**32).")
    raw = np.ascontiguousarray(arr, dtype=dt).tobytes()
    filt = FILTER_SHUFFLE if dt.itemsize > 1 else FILTER_NONE
    if filt == FILTER_SHUFFLE:
        raw = _shuffle(raw, dt.itemsize)
    codec, payload = _pack(raw, codec)
    head = _ARRAY_HEAD.pack(ARRAY_MAGIC, WIRE_VERSION, codec, DTYPE_CODES[dt], arr.ndim, filt)
    return head + struct.pack(f"<{arr.ndim}I", *arr.shape) + payload


def _parse_array_head(buf: bytes) -> tuple[int, np.dtype, tuple, int, int]:
    if len(buf) < _ARRAY_HEAD.size:
        raise WireError(f"Array frame too short ({len(buf)} bytes).")
    magic, version, codec, code, ndim, filt = _ARRAY_HEAD.unpack_from(buf, 0)
    if magic != ARRAY_MAGIC:
        raise WireError(f"Not an array frame (magic {magic!r}, expected {ARRAY_MAGIC!r}).")
    if version != WIRE_VERSION:
        raise WireError(f"Array frame of wire version {version}; this side reads version {WIRE_VERSION}. "
                        "Install the same medsamkit version on client and server.")
    if code not in CODE_DTYPES:
        raise WireError(f"Unknown dtype code {code} in array frame.")
    if not 1 <= ndim <= 4 or filt not in (FILTER_NONE, FILTER_SHUFFLE):
        raise WireError(f"Bad array frame header (ndim {ndim}, filter {filt}).")
    end = _ARRAY_HEAD.size + 4 * ndim
    if len(buf) < end:
        raise WireError("Array frame truncated inside its shape.")
    shape = struct.unpack_from(f"<{ndim}I", buf, _ARRAY_HEAD.size)
    return codec, CODE_DTYPES[code], shape, filt, end


def peek_array(buf: bytes) -> tuple[tuple, np.dtype]:
    """(shape, dtype) declared by an array frame, without decompressing it."""
    _, dt, shape, _, _ = _parse_array_head(buf)
    return shape, dt


def decode_array(buf: bytes, max_bytes: int | None = None) -> np.ndarray:
    """Array frame -> new writable array. WireTooLarge if it would exceed ``max_bytes`` decoded."""
    codec, dt, shape, filt, end = _parse_array_head(buf)
    nbytes = int(np.prod(shape, dtype=np.uint64)) * dt.itemsize
    if max_bytes is not None and nbytes > max_bytes:
        raise WireTooLarge(f"The array {tuple(shape)} {dt} needs {nbytes / 2**20:.1f} MiB; this server accepts at "
                           f"most {max_bytes / 2**20:.1f} MiB per upload.")
    raw = _decompress(memoryview(buf)[end:], codec, nbytes)
    if filt == FILTER_SHUFFLE:
        raw = _unshuffle(raw, dt.itemsize)
    return np.frombuffer(bytearray(raw), dtype=dt).reshape(shape)


def mask_roi(mask: np.ndarray) -> tuple[tuple, tuple]:
    """Bounding box of the True voxels: (start, stop) per axis, stop exclusive; zeros when empty."""
    m = np.asarray(mask, dtype=bool)
    starts, stops = [], []
    for ax in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != ax)
        hit = np.flatnonzero(m.any(axis=other)) if other else np.flatnonzero(m)
        if hit.size == 0:
            return (0,) * m.ndim, (0,) * m.ndim
        starts.append(int(hit[0]))
        stops.append(int(hit[-1]) + 1)
    return tuple(starts), tuple(stops)


def encode_mask(mask: np.ndarray, codec: int = CODEC_ZLIB) -> bytes:
    """2D/3D boolean mask -> mask frame holding only its bounding-box region, bit-packed."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim not in (2, 3):
        raise WireError(f"Masks are 2D or 3D; got shape {m.shape}.")
    start, stop = mask_roi(m)
    roi = m[tuple(slice(a, b) for a, b in zip(start, stop))]
    codec, payload = _pack(np.packbits(roi.ravel(), bitorder="little").tobytes(), codec) if roi.size else (codec, b"")
    n = m.ndim
    head = _MASK_HEAD.pack(MASK_MAGIC, WIRE_VERSION, codec, n)
    return head + struct.pack(f"<{3 * n}I", *m.shape, *start, *stop) + payload


def decode_mask(buf: bytes, max_voxels: int | None = None) -> np.ndarray:
    """Mask frame -> full-size boolean mask (zeros outside the ROI)."""
    if len(buf) < _MASK_HEAD.size:
        raise WireError(f"Mask frame too short ({len(buf)} bytes).")
    magic, version, codec, n = _MASK_HEAD.unpack_from(buf, 0)
    if magic != MASK_MAGIC:
        raise WireError(f"Not a mask frame (magic {magic!r}, expected {MASK_MAGIC!r}).")
    if version != WIRE_VERSION:
        raise WireError(f"Mask frame of wire version {version}; this side reads version {WIRE_VERSION}. "
                        "Install the same medsamkit version on client and server.")
    if n not in (2, 3):
        raise WireError(f"Mask frame with {n} axes; masks are 2D or 3D.")
    end = _MASK_HEAD.size + 12 * n
    if len(buf) < end:
        raise WireError("Mask frame truncated inside its header.")
    vals = struct.unpack_from(f"<{3 * n}I", buf, _MASK_HEAD.size)
    shape, start, stop = vals[:n], vals[n:2 * n], vals[2 * n:]
    total = int(np.prod(shape, dtype=np.uint64))
    if max_voxels is not None and total > max_voxels:
        raise WireTooLarge(f"Mask of shape {shape} exceeds the limit of {max_voxels} voxels.")
    if any(not (0 <= a <= b <= s) for a, b, s in zip(start, stop, shape)):
        raise WireError(f"Mask ROI {start}..{stop} lies outside the mask shape {shape}.")
    out = np.zeros(shape, dtype=bool)
    roi_shape = tuple(b - a for a, b in zip(start, stop))
    size = int(np.prod(roi_shape, dtype=np.uint64))
    if size == 0:
        if len(buf) != end:
            raise WireError("Empty mask frame carries a payload.")
        return out
    packed = _decompress(memoryview(buf)[end:], codec, (size + 7) // 8)
    bits = np.unpackbits(np.frombuffer(packed, np.uint8), count=size, bitorder="little")
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = bits.reshape(roi_shape).astype(bool)
    return out


_JSON_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays/objects nest, counted without parsing (brackets inside strings do not count)."""
    depth = peak = 0
    for m in _JSON_NESTING.finditer(text):
        t = m.group()
        if t in "[{":
            depth += 1
            peak = max(peak, depth)
        elif t in "]}":
            depth -= 1
    return peak


def decode_meta(raw: "str | None") -> dict:
    """The ``X-MedSAMKit-Meta`` header -> dict ({} when absent). WireTooLarge past ``MAX_META_BYTES``; WireError
    when it is not a JSON object or nests deeper than ``MAX_JSON_DEPTH`` (checked before parsing: a parser
    recursing through a 20,000-deep header would fail with RecursionError)."""
    if not raw:
        return {}
    if len(raw) > MAX_META_BYTES:
        raise WireTooLarge(f"Header {META_HEADER} has {len(raw)} bytes; at most {MAX_META_BYTES} are accepted.")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise WireError(f"Header {META_HEADER} nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted.")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"Header {META_HEADER} is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise WireError(f"Header {META_HEADER} must be a JSON object.")
    return meta
