"""Hostile image bytes: `decode_image` returns an RGB uint8 array or raises `BadSample`, never anything else.

Fixed example counts and `derandomize=True`: CI runs the same inputs every time, in bounded time.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilevision.data.decode import MAX_PIXELS, BadSample, decode_image

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def _check(data: bytes) -> None:
    try:
        array = decode_image(data)
    except BadSample as error:
        assert error.reason and "\n" not in error.reason
        return
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    assert array.shape[0] * array.shape[1] <= MAX_PIXELS


def _png(width: int, height: int, *, colour_type: int = 2, idat: bytes = b"") -> bytes:
    """A PNG whose header claims `width` x `height` with (almost) no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", idat or zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _encoded(draw: st.DrawFn) -> bytes:
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "LA", "I;16", "CMYK"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: JPEG holds CMYK, PNG the others
        buffer = io.BytesIO()
        image.save(buffer, "JPEG" if mode == "CMYK" else "PNG")
    return buffer.getvalue()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real small image of a random mode and format, then cut, overwritten or extended at random places."""
    data = bytearray(_encoded(draw))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["cut", "flip", "insert", "zero"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "cut":
            del data[position:]
        elif action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "zero":
            data[position : position + 16] = bytes(len(data[position : position + 16]))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]),
    st.binary(max_size=256),
)
def test_known_magic_then_random_bytes(magic: bytes, rest: bytes) -> None:
    _check(magic + rest)


@settings(FUZZ, max_examples=200)
@given(mutated_images())
def test_mutated_real_images(data: bytes) -> None:
    _check(data)


@pytest.mark.parametrize("side", [10_001, 20_000, 65_535])
@pytest.mark.parametrize("colour_type", [0, 2, 6])
def test_decompression_bomb_header_is_refused_without_decoding(side: int, colour_type: int) -> None:
    # 10001^2 is just above MAX_PIXELS (our check); 20000^2 and up are above PIL's own limit (its error, our message).
    data = _png(side, side, colour_type=colour_type)
    start = time.perf_counter()
    with pytest.raises(BadSample, match=r"above the limit of 100000000 \(decompression bomb\?\)") as info:
        decode_image(data)
    assert time.perf_counter() - start < 1.0  # the header alone decides: nothing the size of the image is allocated
    assert str(side * side) in info.value.reason or f"{side}x{side}" in info.value.reason


def test_a_real_compressed_bomb_is_refused() -> None:
    # A genuine bomb: 12000 x 12000 grey zeros deflate to ~140 kB and would take 144 MB (432 MB as RGB) decoded.
    row = b"\0" + bytes(12_000)
    compressor = zlib.compressobj(9)
    idat = compressor.compress(row * 12_000) + compressor.flush()
    data = _png(12_000, 12_000, colour_type=0, idat=idat)
    assert len(data) < 1_000_000
    with pytest.raises(BadSample, match="12000x12000 pixels is above the limit"):
        decode_image(data)
