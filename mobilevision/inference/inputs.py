"""What `Predictor` accepts as an image, and the one conversion of each kind to RGB uint8 (H, W, 3).

Accepted, alone or in a list (or tuple):

- **a path** (`str` or `os.PathLike`): decoded safely (`mobilevision.data.decode.read_image`: EXIF orientation,
  any mode, pixel limit); a file that is not an image is a `UserError` naming it.
- **a URL** (`http://` or `https://` string): fetched with urllib (timeout `URL_TIMEOUT` s, at most
  `MAX_URL_BYTES` bytes), then decoded as a file is. Other schemes are refused.
- **encoded bytes** (`bytes`, `bytearray`, `memoryview`): the content of an image file (JPEG, PNG, ...).
- **a PIL image**, any mode (`1`, `L`, `P`, `RGBA`, `CMYK`, `I;16`, ...): EXIF orientation applied, then
  `convert("RGB")`.
- **a numpy array**: RGB (not OpenCV's BGR: use `image[..., ::-1]`), uint8, (H, W, 3), (H, W, 4) (alpha dropped),
  (H, W, 1) or (H, W) (grey). Other dtypes and channel-first arrays are refused with the conversion to use.
- **a torch tensor**: (C, H, W) or (H, W, C) with C in 1, 3, 4, or (H, W); a 4-D tensor is a batch (N, C, H, W) or
  (N, H, W, C) and gives one result per image. Which axis holds the channels is read from the shape: exactly one of
  the first and the last axes may have size 1, 3 or 4, else the tensor is refused as ambiguous (e.g. (3, 3, 3),
  (3, 100, 4)). Values: uint8 as they are; integer types when every value is in 0..255; floating point in [0, 1]
  are multiplied by 255 (torchvision's convention), floating point with a value above 1 must lie in [0, 255] and are
  taken as 0..255. Negative values (a normalised tensor), NaN, or values above 255 are refused.

Nothing is guessed beyond these rules: an input that fits none of them is a `ValueError` (a `UserError` for a file
or URL) saying what was received and what to pass instead.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import cv2
import numpy as np

from mobilevision.data.decode import BadSample, decode_image, read_image
from mobilevision.errors import InvalidValueError, UserError

URL_TIMEOUT = 20.0
MAX_URL_BYTES = 50 * 1024 * 1024
_CHANNELS = (1, 3, 4)

if TYPE_CHECKING:
    import torch
    from PIL import Image

ImageInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray | Image.Image | torch.Tensor"
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class InputError(InvalidValueError):
    """An input the Predictor cannot read as one image without guessing."""


def _is_tensor(item: Any) -> bool:
    return type(item).__module__.startswith("torch") and hasattr(item, "dim") and hasattr(item, "detach")


def _is_pil(item: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is a dependency of torchvision and albumentations
        return False
    return isinstance(item, Image.Image)


def is_url(item: Any) -> bool:
    return isinstance(item, str) and item.lower().startswith(("http://", "https://"))


def split_inputs(inputs: Any) -> tuple[list[Any], bool]:
    """`(items, single)`: the images `inputs` holds, and whether the caller passed one image (a dict comes back)
    rather than a list or a batch (a list comes back). A 4-D tensor is split into its images; one inside a list is
    refused (a list of batches has no one-to-one result order)."""
    if _is_tensor(inputs) and inputs.dim() == 4:
        return list(inputs.unbind(0)), False
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        raise InputError(
            f"a 4-D numpy array {inputs.shape} is not an image; pass a list of (H, W, 3) arrays, "
            "or a torch tensor (N, C, H, W)"
        )
    if (
        isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray))
        or _is_pil(inputs)
        or _is_tensor(inputs)
    ):
        return [inputs], True
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    elif isinstance(inputs, dict) or not hasattr(inputs, "__iter__"):
        raise InputError(
            f"cannot read a {type(inputs).__name__} as an image: pass a path, URL, bytes, PIL image, "
            "numpy array, torch tensor, or a list of them"
        )
    else:
        items = list(inputs)
    for item in items:
        if _is_tensor(item) and item.dim() == 4:
            raise InputError(
                f"a batch tensor {tuple(item.shape)} inside a list: pass the batch alone, or a list "
                "of (C, H, W) tensors"
            )
    return items, False


def load_input(item: Any, *, max_url_bytes: int = MAX_URL_BYTES, url_timeout: float = URL_TIMEOUT) -> np.ndarray:
    """One input (see the module docstring) as a C-contiguous RGB uint8 array (H, W, 3)."""
    if is_url(item):
        return _decoded(fetch_url(item, max_bytes=max_url_bytes, timeout=url_timeout), item)
    if isinstance(item, str) and _SCHEME.match(item):
        raise InputError(f"{item}: only http:// and https:// URLs are fetched; download it or pass a path")
    if isinstance(item, (str, os.PathLike)):
        try:
            return read_image(item)
        except BadSample as error:
            raise UserError(f"{item}: {error.reason}") from None
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decoded(bytes(item), f"the {len(item)} bytes given")
    if _is_pil(item):
        return _from_pil(item)
    if _is_tensor(item):
        return _from_tensor(item)
    if isinstance(item, np.ndarray):
        return _from_numpy(item)
    raise InputError(
        f"cannot read a {type(item).__name__} as an image: pass a path, URL, bytes, PIL image, "
        "numpy array (H, W, 3) or torch tensor (C, H, W)"
    )


def fetch_url(url: str, *, max_bytes: int = MAX_URL_BYTES, timeout: float = URL_TIMEOUT) -> bytes:
    """The body of `url` (http/https), refused beyond `max_bytes` (checked on the header and while reading)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mobilevision"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked by caller
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise UserError(f"{url}: {int(length)} bytes is above the limit of {max_bytes}")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        raise UserError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise UserError(f"{url}: cannot fetch ({error.reason})") from None
    except TimeoutError:
        raise UserError(f"{url}: no answer within {timeout:g} s") from None
    if len(data) > max_bytes:
        raise UserError(f"{url}: more than {max_bytes} bytes, above the limit")
    return data


def _decoded(data: bytes, what: str) -> np.ndarray:
    try:
        return decode_image(data)
    except BadSample as error:
        raise UserError(f"{what}: {error.reason}") from None


def _from_pil(image: Any) -> np.ndarray:
    from PIL import ImageOps

    # The same orientation a file on disk gets from `read_image`; convert("RGB") handles every mode (palette, CMYK,
    # 16-bit grey clipped to 8 bits as PIL does).
    upright = ImageOps.exif_transpose(image)
    return np.array(upright.convert("RGB"))  # a writable copy (np.asarray of a PIL image is read-only)


def _from_numpy(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        hint = " (for floats in [0, 1]: (x * 255).round().astype(np.uint8))" if array.dtype.kind == "f" else ""
        raise InputError(f"expected an RGB uint8 image array, got dtype {array.dtype} with shape {array.shape}{hint}")
    if array.ndim == 3 and array.shape[0] in _CHANNELS and array.shape[2] not in _CHANNELS:
        raise InputError(
            f"numpy image arrays are (H, W, C); got {array.shape}, which looks channel-first: pass "
            "array.transpose(1, 2, 0)"
        )
    return _hwc_to_rgb(array)


def _hwc_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in _CHANNELS or min(array.shape[:2]) < 1:
        raise InputError(f"expected an image array (H, W, 3), got shape {array.shape}")
    if array.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(array[..., :3])


def _from_tensor(tensor: Any) -> np.ndarray:
    import torch

    shape = tuple(tensor.shape)
    t = tensor.detach().cpu()
    if t.dim() == 3:
        first, last = shape[0] in _CHANNELS, shape[2] in _CHANNELS
        if first and last:
            raise InputError(
                f"tensor {shape} is ambiguous: both (C, H, W) and (H, W, C) fit; permute it so the "
                "channels cannot be mistaken, or pass a uint8 numpy array (H, W, 3)"
            )
        if not (first or last):
            raise InputError(f"tensor {shape} has no channel axis of size 1, 3 or 4 first or last")
        if first:
            t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise InputError(f"tensor {shape}: expected (C, H, W), (H, W, C), (H, W) or a batch (N, C, H, W)")
    if t.dtype == torch.bool or t.is_complex():
        raise InputError(f"tensor {shape} of dtype {t.dtype} is not an image")
    if t.dtype != torch.uint8:
        t = _to_uint8(t, shape)
    return _hwc_to_rgb(t.contiguous().numpy())


def _to_uint8(t: Any, shape: tuple[int, ...]) -> Any:
    """The documented value rule: integers in 0..255 as they are; floats in [0, 1] x 255, else in [0, 255]."""
    import torch

    if t.numel() == 0:
        raise InputError(f"tensor {shape} is empty")
    if t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise InputError(f"tensor {shape} holds NaN or infinite values")
        low, high = float(t.min()), float(t.max())
        if low < 0 or high > 255:
            raise InputError(
                f"float tensor {shape} has values in [{low:.3g}, {high:.3g}]: expected [0, 1] or "
                "[0, 255] (undo any mean/std normalisation first)"
            )
        if high <= 1.0:
            t = t * 255.0
        return t.round().clamp_(0, 255).to(torch.uint8)
    low, high = int(t.min()), int(t.max())
    if low < 0 or high > 255:
        raise InputError(
            f"{t.dtype} tensor {shape} has values in [{low}, {high}]: expected 0..255 (scale it to 8 bits first)"
        )
    return t.to(torch.uint8)


def load_inputs(items: Sequence[Any]) -> list[np.ndarray]:
    """`load_input` on each item, in order."""
    return [load_input(item) for item in items]
