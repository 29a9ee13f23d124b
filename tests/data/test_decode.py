"""Safe decoding: every colour mode and EXIF orientation to correct RGB, and each defect a `BadSample`."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from mobilevision.data.decode import BadSample, decode_image, read_image, resolve_inside


def _pattern() -> np.ndarray:
    # Asymmetric blocks so every flip and rotation gives a different array.
    image = np.zeros((40, 60, 3), np.uint8)
    image[:10, :20] = (255, 0, 0)
    image[30:, 40:] = (0, 0, 255)
    image[:, 28:32] = (0, 255, 0)
    return image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(_pattern()), fmt, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    ours = decode_image(data)
    assert ours.shape == expected.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - expected).max() <= 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_colour_modes_decode_to_rgb(mode: str) -> None:
    source = Image.fromarray(_pattern())
    if mode == "I;16":
        image = source.convert("L")
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    else:
        image = source.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    ours = decode_image(_encode(image, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    assert ours.shape == (40, 60, 3) and ours.dtype == np.uint8
    expected = np.asarray(source.convert("L").convert("RGB") if mode in ("L", "I;16") else source)
    assert np.abs(ours.astype(int) - expected).max() <= 8


def test_defects_raise_bad_sample(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(_pattern()), "JPEG")
    png = _encode(Image.fromarray(_pattern()), "PNG")
    cases = {
        "empty": b"",
        "not an image": b"hello, world\n" * 10,
        "truncated jpeg": data[: len(data) // 2],
        "jpeg without end marker": data[:-2],
        "truncated png": png[: len(png) - 20],
    }
    for payload in cases.values():
        with pytest.raises(BadSample):
            decode_image(payload)
    progressive = _encode(Image.fromarray(_pattern()), "JPEG", progressive=True)
    with pytest.raises(BadSample, match="truncated"):
        decode_image(progressive[: 2 * len(progressive) // 3])
    with pytest.raises(BadSample, match="not found"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(BadSample, match="directory"):
        read_image(tmp_path)
    with pytest.raises(BadSample, match="limit"):
        decode_image(data, max_pixels=100)


def test_trailing_bytes_and_corrupt_exif_are_not_defects() -> None:
    data = _encode(Image.fromarray(_pattern()), "JPEG")
    # Camera files often carry padding or a maker trailer after the end marker; that is not truncation.
    assert decode_image(data + b"\x00" * 4096).shape == (40, 60, 3)
    assert decode_image(data + bytes(range(256)) * 8).shape == (40, 60, 3)
    png = _encode(Image.fromarray(_pattern()), "PNG")
    assert decode_image(png + b"junk" * 50).shape == (40, 60, 3)
    # A broken EXIF block (APP1 with a cut IFD): the pixels are fine, orientation defaults to 1.
    app1 = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x00" * 4
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    assert decode_image(data[:2] + segment + data[2:]).shape == (40, 60, 3)


def test_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    assert resolve_inside(tmp_path / "images", "a.jpg") == (tmp_path / "images" / "a.jpg").resolve()
    for name in ["../x.jpg", "sub/../../x.jpg", "/etc/passwd", "", "a\x00b.jpg"]:
        with pytest.raises(BadSample):
            resolve_inside(tmp_path / "images", name)
    os.symlink(tmp_path / "outside.jpg", tmp_path / "images" / "link.jpg")
    with pytest.raises(BadSample, match="escapes"):
        resolve_inside(tmp_path / "images", "link.jpg")
    os.symlink(tmp_path / "images" / "l2", tmp_path / "images" / "l1")
    os.symlink(tmp_path / "images" / "l1", tmp_path / "images" / "l2")
    with pytest.raises(BadSample):
        resolve_inside(tmp_path / "images", "l1")
