"""The wire format (medsamkit.protocol.wire): round trips, ROI packing, and refusal of bad frames."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from medsamkit.protocol import wire

CODECS = [wire.CODEC_NONE, wire.CODEC_ZLIB] + ([wire.CODEC_ZSTD] if wire.zstd_available() else [])


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "bool", ">i2"])
def test_array_round_trip(codec, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 17, 9)) * 300).astype(dtype)
    out = wire.decode_array(wire.encode_array(arr, codec))
    assert out.shape == arr.shape and out.flags.writeable
    assert np.array_equal(out, arr.astype(np.dtype(dtype).newbyteorder("<")))


@pytest.mark.parametrize("codec", CODECS)
def test_mask_round_trip_sends_only_the_roi(codec):
    mask = np.zeros((512, 480), bool)
    mask[200:260, 100:190] = True
    mask[230, 120] = False  # a hole: the ROI content must be exact, not a box
    frame = wire.encode_mask(mask, codec)
    assert np.array_equal(wire.decode_mask(frame), mask)
    assert wire.mask_roi(mask) == ((200, 100), (260, 190))
    header = 8 + 12 * 2
    assert len(frame) <= header + (60 * 90 + 7) // 8  # never more than the bit-packed ROI
    if codec != wire.CODEC_NONE:
        assert len(frame) < 200  # a near-solid blob compresses to a few dozen bytes


def test_mask_3d_empty_and_full():
    for mask in (np.zeros((4, 6, 7), bool), np.ones((3, 5, 9), bool)):
        assert np.array_equal(wire.decode_mask(wire.encode_mask(mask, wire.CODEC_ZLIB)), mask)
    rng = np.random.default_rng(1)
    noisy = rng.random((6, 33, 21)) > 0.7
    assert np.array_equal(wire.decode_mask(wire.encode_mask(noisy, wire.CODEC_ZLIB)), noisy)
    assert len(wire.encode_mask(np.zeros((512, 512), bool))) == 8 + 24  # empty: header only


def test_malformed_frames_are_wire_errors():
    good = wire.encode_array(np.arange(100, dtype=np.int16), wire.CODEC_ZLIB)
    with pytest.raises(wire.WireError, match="magic"):
        wire.decode_array(b"GARBAGE-GARBAGE-GARBAGE")
    with pytest.raises(wire.WireError, match="too short"):
        wire.decode_array(b"MS")
    with pytest.raises(wire.WireError):
        wire.decode_array(good[:-5])  # truncated payload
    with pytest.raises(wire.WireError, match="version"):
        wire.decode_array(good[:4] + bytes([9]) + good[5:])
    with pytest.raises(wire.WireError):
        wire.decode_mask(good)  # an array frame is not a mask frame
    mask = wire.encode_mask(np.ones((4, 4), bool), wire.CODEC_ZLIB)
    bad_roi = mask[:8] + struct.pack("<6I", 4, 4, 0, 0, 9, 9) + mask[32:]
    with pytest.raises(wire.WireError, match="outside"):
        wire.decode_mask(bad_roi)


def test_declared_size_is_checked_before_decompressing():
    """A tiny frame declaring a huge array (a decompression bomb) is refused without allocating it."""
    head = struct.pack("<4sBBBBB3x", b"MSKA", 1, wire.CODEC_ZLIB, 2, 3, 0)
    bomb = head + struct.pack("<3I", 4096, 4096, 4096) + zlib.compress(b"\0" * 1000)
    assert wire.peek_array(bomb)[0] == (4096, 4096, 4096)
    with pytest.raises(wire.WireTooLarge, match="at most"):
        wire.decode_array(bomb, max_bytes=64 << 20)
    # A payload that inflates past the declared size is refused too (the reader stops at size + 1).
    small_head = struct.pack("<4sBBBBB3x", b"MSKA", 1, wire.CODEC_ZLIB, 2, 1, 0)
    liar = small_head + struct.pack("<I", 10) + zlib.compress(b"\0" * 10_000_000)
    with pytest.raises(wire.WireError, match="declares 10"):
        wire.decode_array(liar)
    if wire.zstd_available():
        import zstandard

        liar = small_head[:5] + bytes([wire.CODEC_ZSTD]) + small_head[6:] + struct.pack("<I", 10) + \
            zstandard.ZstdCompressor().compress(b"\0" * 10_000_000)
        with pytest.raises(wire.WireError, match="declares 10"):
            wire.decode_array(liar)


def test_codec_negotiation():
    assert wire.choose_codec("zlib") == wire.CODEC_ZLIB
    assert wire.choose_codec(None) == wire.CODEC_ZLIB
    assert wire.choose_codec("brotli") == wire.CODEC_NONE
    if wire.zstd_available():
        assert wire.choose_codec("zstd,zlib") == wire.CODEC_ZSTD
