"""Hostile mask files: `decode_index_mask` returns an (H, W) index array or raises `BadSample`, never anything else;
`check_labels` then accepts exactly the masks whose labels are 0..C-1 or 255.

Fixed example counts and `derandomize=True`: CI runs the same inputs every time, in bounded time.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilevision.data.decode import BadSample
from mobilevision.tasks.segmentation.masks import VOID, check_labels, decode_index_mask, read_index_mask

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
MODES = ["P", "L", "1", "I", "I;16", "RGB", "RGBA", "LA", "F", "CMYK"]


def _check(data: bytes, num_classes: int = 21) -> np.ndarray | None:
    try:
        mask = decode_index_mask(data)
    except BadSample as error:
        assert error.reason and "\n" not in error.reason
        return None
    assert mask.ndim == 2 and np.issubdtype(mask.dtype, np.integer)
    try:
        checked = check_labels(mask, num_classes)
    except BadSample as error:
        assert "mask labels outside" in error.reason
        return None
    assert checked.dtype == np.uint8 and checked.shape == mask.shape
    assert np.isin(checked, [*range(num_classes), VOID]).all()
    return checked


@st.composite
def mask_files(draw: st.DrawFn) -> tuple[bytes, str, np.ndarray]:
    """A small image of a random mode, saved as PNG (TIFF for modes PNG cannot hold), with its source values."""
    mode = draw(st.sampled_from(MODES))
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    values = draw(st.sampled_from([[0, 1, 255], list(range(21)), [0, 30, 300, 65535], [0]]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    array = rng.choice(values, size=(height, width))
    if mode in ("I", "I;16"):
        image = Image.fromarray(array.astype(np.int32 if mode == "I" else np.uint16))
    elif mode == "F":
        image = Image.fromarray(array.astype(np.float32))
    else:
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, "PNG")
    except OSError:  # F, CMYK: not PNG modes
        buffer = io.BytesIO()
        image.save(buffer, "TIFF")
    return buffer.getvalue(), mode, array


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=256))
def test_png_signature_then_random_bytes(rest: bytes) -> None:
    _check(b"\x89PNG\r\n\x1a\n" + rest)


@settings(FUZZ, max_examples=200)
@given(mask_files())
def test_random_small_masks_of_random_modes(sample: tuple[bytes, str, np.ndarray]) -> None:
    data, mode, array = sample
    result = _check(data)
    if mode in ("RGB", "RGBA", "LA", "F", "CMYK"):
        assert result is None  # colour (or float) masks are never taken for indices
    elif mode == "P" or mode == "L":
        clipped = np.clip(array, 0, 255)
        if np.isin(clipped, [*range(21), VOID]).all():
            assert result is not None and np.array_equal(result, clipped)  # indices come back exactly
        else:
            assert result is None
    elif mode in ("I", "I;16") and np.isin(array, [*range(21), VOID]).all():
        assert result is not None and np.array_equal(result, array)


@settings(FUZZ, max_examples=150)
@given(mask_files(), st.integers(0, 3), st.data())
def test_damaged_masks(sample: tuple[bytes, str, np.ndarray], damage: int, data: st.DataObject) -> None:
    raw = bytearray(sample[0])
    for _ in range(damage):
        position = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[position] ^= data.draw(st.integers(1, 255))
        else:
            del raw[position:]
            if not raw:
                break
    _check(bytes(raw))


@pytest.mark.parametrize("side", [10_001, 30_000])
def test_mask_bomb_header_is_refused(side: int, tmp_path) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(BadSample, match="above the limit of 100000000"):
        read_index_mask(path)
