"""Label masks as class indices: reading index PNGs, checking their labels, the VOC palette, writing palette PNGs.

A segmentation mask is an (H, W) array of class indices, 255 = void (ignored by loss and metric). On disk it is a
palette ('P') PNG whose pixel values are the indices (the palette only colours them for people) or a single-channel
('L', 'I', 'I;16') PNG holding the indices directly. A colour-coded RGB mask is refused: mapping colours back to
classes needs a palette the file does not carry, and a colour-quantised or anti-aliased edge would silently become a
wrong label.

Shared by the dataset readers (`data.py`) and the evaluator (`evaluation.py`), which is why it imports neither
albumentations nor torch.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from mobilevision.data.decode import MAX_PIXELS, BadSample, bomb_reason
from mobilevision.data.labels import voc_palette
from mobilevision.io import atomic_path

VOID = 255

# PIL modes whose pixel values are class indices. '1' (bilevel) counts: its pixels are 0/1 once converted to 'L'.
_INDEX_MODES = {"P", "L", "I", "I;16", "I;16B", "I;16L", "1"}


def decode_index_mask(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an index-mask image (palette or single-channel) to an (H, W) integer array of class indices.

    The palette is never applied: a 'P' image's pixel values are returned as they are.

    Raises:
        BadSample: empty, undecodable, truncated, above `max_pixels`, or a colour (RGB/RGBA/...) mask.
    """
    if not data:
        raise BadSample("empty mask file (0 bytes)")
    try:
        # PIL's header warnings (decompression-bomb size, corrupt EXIF) are ours to judge: the size is checked
        # against `max_pixels` below, and a bad file becomes a BadSample the dataset reports once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:  # above 2 * PIL's limit: refused before we see the size
        raise BadSample(f"mask: {bomb_reason(error, max_pixels)}") from None
    except Exception:  # noqa: BLE001 - any header failure means "not a mask we can read"
        raise BadSample("mask is not a readable image") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadSample(f"mask is {width}x{height} pixels, above the limit of {max_pixels}")
        if image.mode not in _INDEX_MODES:
            raise BadSample(
                f"colour-coded {image.mode} mask: masks must be palette ('P') or single-channel index PNGs, "
                "whose pixel values are class indices"
            )
        try:
            image.load()
        except Exception:  # noqa: BLE001 - truncated or corrupt pixel data
            raise BadSample("cannot decode mask (truncated or corrupt)") from None
        if image.mode == "1":
            image = image.convert("L")
            return (np.asarray(image) > 0).astype(np.uint8)
        return np.asarray(image)


def read_index_mask(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an index-mask file; see `decode_index_mask`. A missing file raises `BadSample` too."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadSample("mask file not found") from None
    except OSError as error:
        raise BadSample(f"cannot read mask file ({error.strerror or error})") from None
    return decode_index_mask(data, max_pixels=max_pixels)


def read_sbd_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an SBD `cls/*.mat` file's `GTcls.Segmentation` as an (H, W) array of class indices.

    Raises:
        BadSample: unreadable file, no GTcls struct, or a Segmentation field that is not a 2-D array.
    """
    if not Path(path).is_file():
        raise BadSample("mask file not found")
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception:  # noqa: BLE001 - scipy raises many types for a corrupt or HDF5 (v7.3) file
        raise BadSample("cannot read .mat file (corrupt, or not a MATLAB v5 file)") from None
    gt = mat.get("GTcls")
    segmentation = getattr(gt, "Segmentation", None)
    if segmentation is None:
        raise BadSample("no GTcls.Segmentation in .mat file")
    array = np.asarray(segmentation)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise BadSample(f"GTcls.Segmentation is not a 2-D integer array (shape {array.shape}, {array.dtype})")
    return array


def invalid_labels(mask: np.ndarray, num_classes: int) -> list[int]:
    """The sorted label values in `mask` that are neither a class index 0..num_classes-1 nor void (255)."""
    values = np.unique(mask)
    return [int(v) for v in values if not (0 <= v < num_classes or v == VOID)]


def check_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Return `mask` as uint8 (H, W) after checking every label is in 0..num_classes-1 or 255.

    Raises:
        BadSample: naming up to ten offending values.
    """
    bad = invalid_labels(mask, num_classes)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise BadSample(f"mask labels outside 0..{num_classes - 1} and {VOID} (void): {shown}")
    return mask.astype(np.uint8, copy=False)


def write_palette_png(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write an (H, W) mask of class indices 0..255 as a VOC-palette PNG, atomically (temp file + rename).

    `mask` may be a numpy array or a CPU torch tensor of any integer dtype. Values are stored as palette indices, so
    reading the file back with `read_index_mask` returns `mask` exactly.

    Raises:
        ValueError: if `mask` is not 2-D or holds values outside 0..255.
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(array.shape)}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"mask values must be in 0..255, got range {int(array.min())}..{int(array.max())}")
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    image.putpalette(voc_palette())  # turns the 'L' image into 'P' keeping the values as indices
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
