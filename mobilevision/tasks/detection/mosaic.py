"""Mosaic: four training images tiled into one before the SSD augmentation (YOLOv4's "mosaic", Bochkovskiy et al.,
2020, section 3.3), for small datasets trained from random weights.

Each of the four images is resized to fit a `size` x `size` cell (aspect kept) and placed in one quadrant of a
2 `size` x 2 `size` canvas filled with the ImageNet mean, touching a random centre point (uniform in the middle half
of the canvas, as YOLOv5 draws it), so the quadrants differ in size and each image is cut where it leaves the
canvas. A box keeps its label when at least `min_visible` of its area is still on the canvas (clipped to it), as
YOLOv5's `box_candidates` drops slivers. The canvas then goes through the usual pipeline (photometric distortion,
zoom out, IoU crop, flip, resize to the input): the resize halves what the crop leaves whole, and the crop zooms back
in, so objects appear at more scales and in more contexts than 131 photos offer alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mobilevision.tasks.detection.transforms import MEAN_FILL

Loaded = tuple[np.ndarray, np.ndarray, np.ndarray]  # RGB uint8 (H, W, 3), boxes float32 (N, 4), labels int64 (N,)


def mosaic(
    samples: Sequence[Loaded],
    size: int,
    rng: np.random.Generator,
    *,
    fill: tuple[int, int, int] = MEAN_FILL,
    min_visible: float = 0.25,
) -> Loaded:
    """Tile four `(image, boxes, labels)` samples (boxes x1 y1 x2 y2 in their image's pixels) into one
    (2 `size`, 2 `size`) image with its boxes and labels."""
    if len(samples) != 4:
        raise ValueError(f"a mosaic takes 4 samples, got {len(samples)}")
    side = 2 * size
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = fill
    cx, cy = (int(v) for v in rng.uniform(0.5 * size, 1.5 * size, size=2))
    all_boxes, all_labels = [], []
    for quadrant, (image, boxes, labels) in enumerate(samples):
        height, width = image.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # The image's corner that touches the centre: bottom-right (quadrant 0), bottom-left, top-right, top-left.
        left = cx - new_w if quadrant in (0, 2) else cx
        top = cy - new_h if quadrant in (0, 1) else cy
        # The part of the image that lands on the canvas.
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + new_w, side), min(top + new_h, side)
        canvas[y0:y1, x0:x1] = resized[y0 - top : y1 - top, x0 - left : x1 - left]
        if not len(boxes):
            continue
        placed = boxes.astype(np.float32) * np.float32(scale) + np.array([left, top, left, top], np.float32)
        clipped = placed.copy()
        clipped[:, [0, 2]] = np.clip(placed[:, [0, 2]], x0, x1)
        clipped[:, [1, 3]] = np.clip(placed[:, [1, 3]], y0, y1)
        area = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = (kept_area > 0) & (kept_area >= min_visible * area)
        all_boxes.append(clipped[keep])
        all_labels.append(np.asarray(labels, np.int64)[keep])
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32)
    labels = np.concatenate(all_labels) if all_labels else np.zeros((0,), np.int64)
    return canvas, boxes.astype(np.float32), labels
