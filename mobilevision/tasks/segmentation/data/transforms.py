"""The segmentation augmentation (DeepLab's random scale, pad, crop, flip) and the evaluation transforms."""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2

from mobilevision.tasks.segmentation.data.base import IMAGENET_MEAN_255
from mobilevision.tasks.segmentation.masks import VOID


def train_transforms(
    crop_size: int = 513,
    scale: tuple[float, float] = (0.5, 2.0),
    *,
    hflip: float = 0.5,
    fill: tuple[int, int, int] = IMAGENET_MEAN_255,
    seed: int | None = None,
) -> A.Compose:
    """The DeepLab training augmentation: random scale in `scale`, pad to `crop_size` (image with `fill`, mask with
    255), random `crop_size` x `crop_size` crop, horizontal flip with probability `hflip`.

    Image resampling is bilinear, mask resampling nearest (labels are never blended). The mask uses OpenCV's
    INTER_NEAREST_EXACT, which samples at pixel centres like INTER_LINEAR does; plain INTER_NEAREST does not, and
    shifts the mask by up to one pixel against the image (measured at scale 1.3 on a painted rectangle).
    `seed` makes the random draws reproducible (None: fresh randomness).
    """
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    low, high = scale
    if not 0 < low <= high:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
    return A.Compose(
        [
            # albumentations' scale_limit is relative to 1: (low - 1, high - 1) gives factors uniform in [low, high].
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            ),
            A.PadIfNeeded(
                min_height=crop_size,
                min_width=crop_size,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=fill,
                fill_mask=VOID,
            ),
            A.RandomCrop(height=crop_size, width=crop_size),
            A.HorizontalFlip(p=hflip),
        ],
        seed=seed,
    )


def eval_transforms(
    mode: str = "pad",
    size: int | tuple[int, int] | None = None,
    multiple: int = 16,
    *,
    fill: tuple[int, int, int] = IMAGENET_MEAN_255,
) -> A.Compose:
    """Evaluation transform on the whole image (see the module docstring for how to crop back).

    Args:
        mode: "pad": pad bottom/right to at least `size` (if given) and to a multiple of `multiple` (the output
            stride), image with `fill`, mask with 255. "resize": resize to `size` (int or (h, w), required).
        size: see `mode`.
        multiple: the output stride the padded size must be a multiple of ("pad" mode).
    """
    if mode == "pad":
        if multiple <= 0:
            raise ValueError(f"multiple must be positive, got {multiple}")
        pad = {"position": "top_left", "border_mode": cv2.BORDER_CONSTANT, "fill": fill, "fill_mask": VOID}
        steps: list[Any] = []
        if size is not None:
            height, width = (size, size) if isinstance(size, int) else size
            steps.append(A.PadIfNeeded(min_height=height, min_width=width, **pad))
        steps.append(
            A.PadIfNeeded(
                min_height=None, min_width=None, pad_height_divisor=multiple, pad_width_divisor=multiple, **pad
            )
        )
        return A.Compose(steps)
    if mode == "resize":
        if size is None:
            raise ValueError("eval_transforms(mode='resize') needs size (int or (h, w)), got None")
        height, width = (size, size) if isinstance(size, int) else size
        return A.Compose(
            [A.Resize(height, width, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT)]
        )
    raise ValueError(f"mode must be 'pad' or 'resize', got {mode!r}")
