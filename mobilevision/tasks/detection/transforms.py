"""The SSD training augmentation as albumentations transforms, and the evaluation resize.

SSD (Liu et al., ECCV 2016, section 2.2 "Data augmentation", and the "zoom out" of section 3.6): photometric
distortion, zoom out onto a mean-filled canvas up to 4x (makes small objects), a random crop whose overlap with some
ground-truth box is at least one of {0, 0.1, 0.3, 0.5, 0.7, 0.9} (or no crop), keeping only boxes whose centre is
in the crop, a horizontal flip, then a resize to the model's square input. Parameter ranges follow torchvision's
`RandomPhotometricDistort`, `RandomZoomOut` and `RandomIoUCrop`, so `mobilevision benchmark data` compares like with
like.

All pipelines take `image` (RGB uint8 (H, W, 3)), `bboxes` (float (N, 4) x1 y1 x2 y2 in pixels) and `labels` ((N,))
as keywords and return the same keys (albumentations `Compose` call convention).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.bbox_utils import denormalize_bboxes, normalize_bboxes

# ImageNet mean in 0..255 RGB: zoom-out canvases are filled with it so they normalise to zero inside the model.
MEAN_FILL: tuple[int, int, int] = (124, 116, 104)
# torchvision RandomIoUCrop's options; 1.0 means "no crop". SSD's are the same without 0.0 and with "whole image".
IOU_OPTIONS: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
_GRAY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as cv2 and torchvision's rgb_to_grayscale


class PhotometricDistort(A.ImageOnlyTransform):
    """SSD photometric distortion on uint8 RGB, each step with probability `p_each` (ranges of torchvision's
    `RandomPhotometricDistort`): brightness factor, contrast before or after (blend with the mean grey), saturation
    and hue (one HSV round trip, as the original SSD code), then a random channel permutation.

    Implemented with lookup tables: every step but the HSV conversion is one `cv2.LUT` pass over the bytes.
    """

    def __init__(
        self,
        *,
        brightness: tuple[float, float] = (0.875, 1.125),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-0.05, 0.05),
        p_each: float = 0.5,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p_each = p_each

    def get_params(self) -> dict[str, Any]:
        rng, p = self.random_generator, self.p_each
        return {
            "brightness": rng.uniform(*self.brightness) if rng.random() < p else None,
            "contrast_first": rng.random() < 0.5,
            "contrast": rng.uniform(*self.contrast) if rng.random() < p else None,
            "saturation": rng.uniform(*self.saturation) if rng.random() < p else None,
            "hue": rng.uniform(*self.hue) if rng.random() < p else None,
            "permutation": rng.permutation(3) if rng.random() < p else None,
        }

    @staticmethod
    def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
        # Blend with the mean grey level: the mean of the luma is the luma of the channel means (linearity).
        mean = float(np.dot(cv2.mean(img)[:3], _GRAY))
        lut = np.clip(np.arange(256) * factor + mean * (1 - factor), 0, 255).astype(np.uint8)
        return cv2.LUT(img, lut)

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None = None,
        contrast_first: bool = True,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: float | None = None,
        permutation: np.ndarray | None = None,
        **params: Any,
    ) -> np.ndarray:
        if brightness is not None:
            img = cv2.LUT(img, np.clip(np.arange(256) * brightness, 0, 255).astype(np.uint8))
        if contrast is not None and contrast_first:
            img = self._contrast(img, contrast)
        if saturation is not None or hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # uint8: H in 0..179, S and V in 0..255
            levels = np.arange(256)
            lut = np.empty((256, 1, 3), np.uint8)
            lut[:, 0, 0] = (levels + round((hue or 0.0) * 180)) % 180 if hue is not None else np.minimum(levels, 255)
            lut[:, 0, 1] = np.clip(levels * (saturation if saturation is not None else 1.0), 0, 255)
            lut[:, 0, 2] = levels
            img = cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB)
        if contrast is not None and not contrast_first:
            img = self._contrast(img, contrast)
        if permutation is not None:
            # mixChannels: one pass, about 10x faster than numpy fancy indexing on the channel axis.
            out = np.empty_like(img)
            cv2.mixChannels([img], [out], [int(permutation[0]), 0, int(permutation[1]), 1, int(permutation[2]), 2])
            img = out
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "saturation", "hue", "p_each")


class ZoomOut(A.DualTransform):
    """Place the image at a random spot of a canvas `ratio` times larger (ratio uniform in `side_range`), filled with
    `fill`: SSD's "expand", which turns large objects into small ones. Masks are filled with `fill_mask`."""

    def __init__(
        self,
        *,
        side_range: tuple[float, float] = (1.0, 4.0),
        fill: tuple[int, int, int] = MEAN_FILL,
        fill_mask: int = 0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        if not 1.0 <= side_range[0] <= side_range[1]:
            raise ValueError(f"side_range must satisfy 1 <= min <= max, got {side_range}")
        self.side_range, self.fill, self.fill_mask = side_range, fill, fill_mask

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.random_generator.uniform(*self.side_range)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        top = int(self.random_generator.uniform(0, canvas_h - height + 1e-9))
        left = int(self.random_generator.uniform(0, canvas_w - width + 1e-9))
        return {"pad": (top, canvas_h - height - top, left, canvas_w - width - left)}

    def apply(self, img: np.ndarray, pad: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        # One copyMakeBorder: allocates the canvas and copies the image in a single pass.
        return cv2.copyMakeBorder(img, *pad, cv2.BORDER_CONSTANT, value=self.fill)

    def apply_to_mask(self, mask: np.ndarray, pad: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return cv2.copyMakeBorder(mask, *pad, cv2.BORDER_CONSTANT, value=self.fill_mask)

    def apply_to_bboxes(self, bboxes: np.ndarray, pad: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if not bboxes.size:
            return bboxes
        height, width = params["shape"][:2]
        top, bottom, left, right = pad
        boxes = denormalize_bboxes(bboxes.copy(), (height, width))
        boxes[:, [0, 2]] += left
        boxes[:, [1, 3]] += top
        return normalize_bboxes(boxes, (height + top + bottom, width + left + right))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("side_range", "fill", "fill_mask")


class MinIoURandomCrop(A.DualTransform):
    """SSD's sampled crop (torchvision `RandomIoUCrop`): pick a minimum IoU from `options` (1.0 = keep the image),
    then up to `trials` crops with sides in [`min_scale`, `max_scale`] of the image and aspect ratio in
    `aspect_range`; accept the first whose IoU with some box centred inside it reaches the minimum. Boxes whose centre
    falls outside the crop are removed with their labels; the others are clipped to it. Images without boxes are
    left as they are."""

    def __init__(
        self,
        *,
        options: tuple[float, ...] = IOU_OPTIONS,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        aspect_range: tuple[float, float] = (0.5, 2.0),
        trials: int = 40,
        max_option_draws: int = 50,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
        self.options, self.min_scale, self.max_scale = tuple(options), min_scale, max_scale
        self.aspect_range, self.trials, self.max_option_draws = aspect_range, trials, max_option_draws

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        bboxes = data.get("bboxes")
        no_crop = {"crop": (0, 0, width, height)}
        if bboxes is None or len(bboxes) == 0:
            return no_crop
        boxes = denormalize_bboxes(np.asarray(bboxes)[:, :4].astype(np.float64), (height, width))
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        rng = self.random_generator
        # torchvision draws options until one succeeds; the cap only bounds pathological inputs.
        for _ in range(self.max_option_draws):
            min_iou = self.options[int(rng.integers(len(self.options)))]
            if min_iou >= 1.0:
                return no_crop
            # All trials of this option at once (same draws as torchvision's loop, vectorised); the first that
            # passes every test wins, as in the loop.
            scale = rng.uniform(self.min_scale, self.max_scale, size=(self.trials, 2))
            offset = rng.random((self.trials, 2))
            new_w = (width * scale[:, 0]).astype(np.int64)
            new_h = (height * scale[:, 1]).astype(np.int64)
            left = ((width - new_w) * offset[:, 0]).astype(np.int64)
            top = ((height - new_h) * offset[:, 1]).astype(np.int64)
            right, bottom = left + new_w, top + new_h
            with np.errstate(divide="ignore", invalid="ignore"):
                aspect = new_w / new_h
            valid = (new_w > 0) & (new_h > 0) & (aspect >= self.aspect_range[0]) & (aspect <= self.aspect_range[1])
            # [trials, boxes]: centre inside the crop, and IoU of each box with the crop.
            cx, cy = centres[None, :, 0], centres[None, :, 1]
            inside = (left[:, None] < cx) & (cx < right[:, None]) & (top[:, None] < cy) & (cy < bottom[:, None])
            iw = np.clip(
                np.minimum(boxes[None, :, 2], right[:, None]) - np.maximum(boxes[None, :, 0], left[:, None]), 0, None
            )
            ih = np.clip(
                np.minimum(boxes[None, :, 3], bottom[:, None]) - np.maximum(boxes[None, :, 1], top[:, None]), 0, None
            )
            inter = iw * ih
            iou = inter / (areas[None, :] + (new_w * new_h)[:, None] - inter)
            best = np.where(inside, iou, -1.0).max(1)
            passed = np.nonzero(valid & inside.any(1) & (best >= min_iou))[0]
            if passed.size:
                t = int(passed[0])
                return {"crop": (int(left[t]), int(top[t]), int(right[t]), int(bottom[t]))}
        return no_crop

    def apply(self, img: np.ndarray, crop: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        left, top, right, bottom = crop
        return img[top:bottom, left:right]  # a view: the resize that follows reads it without a copy

    def apply_to_mask(self, mask: np.ndarray, crop: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return self.apply(mask, crop)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if not bboxes.size:
            return bboxes
        height, width = params["shape"][:2]
        left, top, right, bottom = crop
        boxes = denormalize_bboxes(bboxes.copy(), (height, width))
        centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        if (left, top, right, bottom) != (0, 0, width, height):
            # Rows carry the encoded labels in their extra columns, so dropping a row drops its label too.
            boxes = boxes[(left < centre_x) & (centre_x < right) & (top < centre_y) & (centre_y < bottom)]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] - left, 0, right - left)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] - top, 0, bottom - top)
        return normalize_bboxes(boxes, (bottom - top, right - left))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("options", "min_scale", "max_scale", "aspect_range", "trials", "max_option_draws")


def _bbox_params() -> A.BboxParams:
    # min_width/min_height 1 px: a box that shrank below a pixel (zoom out, then resize) has nothing left to learn.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_width=1.0,
        min_height=1.0,
        clip=True,
        filter_invalid_bboxes=True,
    )


def _resize(height: int, width: int) -> A.Resize:
    # Masks (multi-task data) are sampled nearest-exact: labels are never blended, and unlike INTER_NEAREST it
    # samples at pixel centres as INTER_LINEAR does, so the mask does not shift by a pixel against the image.
    return A.Resize(
        height,
        width,
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST_EXACT,
        area_for_downscale="image",
    )


def train_transforms(
    size: int | tuple[int, int],
    *,
    photometric: bool = True,
    zoom_out: bool = True,
    max_zoom: float = 4.0,
    min_iou_crop: bool = True,
    hflip: bool = True,
    fill: tuple[int, int, int] = MEAN_FILL,
    fill_mask: int = 0,
    seed: int | None = None,
) -> A.Compose:
    """SSD training pipeline ending in a `size` x `size` (or (H, W)) image; each step can be switched off.

    A lighter recipe for short CPU runs: `zoom_out=False` (or a smaller `max_zoom`) keeps objects larger.
    A `mask` given with the boxes moves with them (the multi-task data): the zoom-out canvas fills it with
    `fill_mask` (255, void, for a semantic mask: nothing is known there) and the resize samples it nearest-exact.
    """
    height, width = (size, size) if isinstance(size, int) else size
    steps: list[A.BasicTransform] = []
    if photometric:
        steps.append(PhotometricDistort())
    if zoom_out and max_zoom > 1.0:
        steps.append(ZoomOut(side_range=(1.0, max_zoom), fill=fill, fill_mask=fill_mask, p=0.5))
    if min_iou_crop:
        steps.append(MinIoURandomCrop())
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    # After a 4x zoom out the shrink to the input size is up to 8x; bilinear sampling would alias small objects away,
    # so shrinking uses INTER_AREA (anti-aliased, like torchvision's antialias=True) and enlarging INTER_LINEAR.
    steps.append(_resize(height, width))
    return A.Compose(steps, bbox_params=_bbox_params(), seed=seed)


def eval_transforms(size: int | tuple[int, int]) -> A.Compose:
    """Evaluation: a plain resize to `size` x `size` (or (H, W)); boxes (and a `mask`, if given) follow."""
    height, width = (size, size) if isinstance(size, int) else size
    return A.Compose([_resize(height, width)], bbox_params=_bbox_params())
