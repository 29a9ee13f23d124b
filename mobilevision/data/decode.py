"""Safe image decoding: every image the package reads goes through `read_image`.

A defect in one file raises `BadSample` with a short reason; the dataset that called us skips the sample and records
the reason in its `DefectReport`. Nothing here raises anything else for a bad file.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Decompression-bomb guard: 1.0e8 pixels is about a 10000x10000 image, far beyond any detection or segmentation set.
# Image files a dataset folder may hold, in the order that decides between two files of one stem.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 100_000_000

cv2.setNumThreads(1)  # DataLoader workers parallelise across images; OpenCV threads inside them only oversubscribe.


class BadSample(Exception):
    """One sample cannot be used. `reason` is short and names no file (the caller names it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_inside(root: str | os.PathLike[str], name: str) -> Path:
    """Join `name` to `root`, refusing names that leave it (absolute paths, `..`, symlinks that point out).

    Raises:
        BadSample: when the resolved path is not inside `root`, or is a name the file system refuses (too long).
    """
    if not name or os.path.isabs(name) or Path(name).drive:
        raise BadSample("path is absolute or empty, outside the image folder")
    try:
        root_path = Path(root).resolve()
        path = (root_path / name).resolve()
    except ValueError:  # an embedded NUL byte: no file can have that name
        raise BadSample("invalid file name (contains a NUL byte)") from None
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        raise BadSample("path cannot be resolved (symlink loop?)") from None
    if not path.is_relative_to(root_path):
        raise BadSample("path escapes the image folder")
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # a missing file is the caller's to report, as such
    except OSError as error:  # a name the file system refuses (too long, say): no file can be read under it
        raise BadSample(f"unusable file name ({error.strerror or error})") from None
    return path


def _looks_truncated(data: bytes) -> bool:
    # OpenCV decodes a cut JPEG or PNG into a partly grey image with only a stderr warning, so check the end markers.
    if data[:3] == b"\xff\xd8\xff":
        # Inside entropy-coded data 0xFF is always stuffed (FF 00), so an FF D9 after the last start-of-scan (FF DA)
        # can only be the end-of-image marker. Looking at the last bytes instead would reject the many camera files
        # with data after the end marker (padding, maker trailers).
        end = data.rfind(b"\xff\xd9")
        return end < 0 or end < data.rfind(b"\xff\xda")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        # The IEND chunk with its fixed CRC; found anywhere so trailing bytes after it do not count as a cut.
        return data.rfind(b"IEND\xaeB`\x82") < 0
    return False


def read_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), EXIF orientation applied, whatever its mode (grey, RGBA, CMYK).

    Raises:
        BadSample: missing, empty, truncated, undecodable, or above `max_pixels`.
    """
    return read_image_in_frame(path, None, max_pixels=max_pixels)[0]


def read_image_in_frame(
    path: str | os.PathLike[str], stated_size: tuple[int, int] | None, *, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, bool]:
    """Read an image in the frame its annotation was made in: `stated_size` (width, height) is the size the
    annotation file gives (COCO's width/height, VOC's <size>, a mask's size).

    EXIF orientation is applied (`read_image`), except when it turns the image so that its size no longer matches the
    stated one while the stored pixels do: the annotation was then made on the stored frame (COCO has such photos),
    and rotating the image would put every box and mask pixel in the wrong place.

    Returns:
        (RGB uint8 (H, W, 3), True when the EXIF orientation was left unapplied for that reason).
    Raises:
        BadSample: as `read_image`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadSample("file not found") from None
    except IsADirectoryError:
        raise BadSample("is a directory, not an image") from None
    except OSError as error:
        raise BadSample(f"cannot read file ({error.strerror or error})") from None
    return decode_image_in_frame(data, stated_size, max_pixels=max_pixels)


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes; see `read_image`."""
    return decode_image_in_frame(data, None, max_pixels=max_pixels)[0]


def decode_image_in_frame(
    data: bytes, stated_size: tuple[int, int] | None, *, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, bool]:
    """Decode encoded image bytes; see `read_image_in_frame`."""
    if not data:
        raise BadSample("empty file (0 bytes)")
    import io

    try:
        # PIL reads only the header here: size and EXIF orientation, before any pixel is decoded.
        # PIL's warnings here (corrupt EXIF, decompression-bomb size) are ours to judge: silenced, checked below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
                orientation = _orientation(header)
    except Image.DecompressionBombError as error:
        # PIL refuses headers above 2 * Image.MAX_IMAGE_PIXELS itself, before our check can see the size.
        raise BadSample(bomb_reason(error, max_pixels)) from None
    except Exception:  # noqa: BLE001 - any header failure means "not an image we can read"
        # A JPEG or PNG cut inside its header fails here: name the likely cause.
        reason = "truncated file (image data ends early)" if _looks_truncated(data) else "not a readable image"
        raise BadSample(reason) from None
    if width * height > max_pixels:
        raise BadSample(f"{width}x{height} pixels is above the limit of {max_pixels} (decompression bomb?)")
    if _looks_truncated(data):
        raise BadSample("truncated file (image data ends early)")
    frame_kept = False
    if stated_size is not None and orientation in _TRANSPOSING:
        stored, oriented = (width, height), (height, width)
        if tuple(stated_size) == stored and stored != oriented:
            orientation, frame_kept = 1, True
    # IMREAD_IGNORE_ORIENTATION: we apply EXIF orientation ourselves so the result does not depend on OpenCV's build.
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None:
        # OpenCV cannot decode some valid formats (e.g. some TIFF/GIF variants); PIL is the slower fallback.
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                rgb = np.asarray(image.convert("RGB"))
        except Exception:  # noqa: BLE001
            raise BadSample("cannot decode image data") from None
        return _apply_orientation(rgb, orientation), frame_kept
    array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    return _apply_orientation(array, orientation), frame_kept


def bomb_reason(error: Image.DecompressionBombError, max_pixels: int) -> str:
    """The pixel-limit reason for a header PIL refused as a decompression bomb (the pixel count from its message)."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found.group(1))} pixels" if found else "more pixels than PIL's own limit"
    return f"{pixels} is above the limit of {max_pixels} (decompression bomb?)"


# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_TRANSPOSING = frozenset({5, 6, 7, 8})


def _orientation(header: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or when the EXIF block is corrupt (the pixels are still fine)."""
    try:
        value = header.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1..8) to an (H, W, C) array."""
    if orientation == 2:
        return np.ascontiguousarray(array[:, ::-1])
    if orientation == 3:
        return cv2.rotate(array, cv2.ROTATE_180)
    if orientation == 4:
        return np.ascontiguousarray(array[::-1])
    if orientation == 5:
        return np.ascontiguousarray(array.transpose(1, 0, 2))
    if orientation == 6:
        return cv2.rotate(array, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return np.ascontiguousarray(cv2.rotate(array, cv2.ROTATE_90_CLOCKWISE)[::-1])
    if orientation == 8:
        return cv2.rotate(array, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return array
