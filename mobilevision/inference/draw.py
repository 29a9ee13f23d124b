"""Drawing predictions: boxes with labels, palette overlays for masks, and a contact sheet (grid) of images.

All functions take and return RGB uint8 arrays (H, W, 3) and never modify their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from mobilevision.data.labels import voc_palette

_PALETTE = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)


def class_color(label: int) -> tuple[int, int, int]:
    """A stable RGB colour per class: VOC palette entries 1..255 (never entry 0, black)."""
    r, g, b = _PALETTE[1 + (max(int(label), 1) - 1) % 255]
    return int(r), int(g), int(b)


def draw_detections(
    image: np.ndarray, result: Mapping[str, Any], *, thickness: int | None = None, show_scores: bool = True
) -> np.ndarray:
    """A copy of `image` with each box of `result` (Predictor output: boxes [N, 4], scores, labels, names) drawn
    with a filled caption "name score"."""
    canvas = np.ascontiguousarray(image).copy()
    h, w = canvas.shape[:2]
    thickness = thickness or max(1, round(min(h, w) / 320))
    font_scale = max(0.35, min(h, w) / 900)
    boxes = np.asarray(result.get("boxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(result.get("scores", np.zeros(len(boxes))), dtype=np.float32)
    labels = np.asarray(result.get("labels", np.zeros(len(boxes))), dtype=np.int64)
    names = list(result.get("names") or [f"class_{int(label)}" for label in labels])
    for box, score, label, name in zip(boxes, scores, labels, names):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(label))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)
        caption = f"{name} {score:.2f}" if show_scores else str(name)
        (tw, th), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + baseline + 2), color, -1)
        # Dark text on light colours, white on dark: readable on any palette entry.
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(
            canvas, caption, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, 1, cv2.LINE_AA
        )
    return canvas


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Class indices (H, W) -> RGB (H, W, 3) with the VOC palette (255, void, is light grey)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    return _PALETTE[np.clip(mask, 0, 255).astype(np.uint8)]


def overlay_mask(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """`image` blended with the coloured mask where the class is not background (0)."""
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"mask shape {np.asarray(mask).shape} does not match image shape {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = colorize_mask(mask)
    blended = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    return np.where((np.asarray(mask) != 0)[..., None], blended, image)


def legend_strip(
    labels: Sequence[int], class_names: Sequence[str], width: int, *, row_height: int = 18, background: int = 255
) -> np.ndarray:
    """A white strip `width` pixels wide listing `labels` as a colour swatch (the mask palette's colour) and the
    class name, wrapped over as many rows as needed. RGB uint8 (rows * row_height, width, 3)."""
    entries = []
    for label in labels:
        name = class_names[label] if 0 <= label < len(class_names) else f"class_{label}"
        (tw, _), _ = cv2.getTextSize(str(name), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        entries.append((int(label), str(name), row_height + tw + 10))
    rows, x = [[]], 4
    for entry in entries:
        if x + entry[2] > width and rows[-1]:
            rows.append([])
            x = 4
        rows[-1].append(entry)
        x += entry[2]
    strip = np.full((max(1, len(rows)) * row_height, width, 3), background, dtype=np.uint8)
    for r, row in enumerate(rows):
        x = 4
        for label, name, span in row:
            y = r * row_height
            colour = tuple(int(v) for v in _PALETTE[np.clip(label, 0, 255)])
            cv2.rectangle(strip, (x, y + 3), (x + row_height - 6, y + row_height - 4), colour, -1)
            cv2.rectangle(strip, (x, y + 3), (x + row_height - 6, y + row_height - 4), (0, 0, 0), 1)
            cv2.putText(
                strip,
                name,
                (x + row_height, y + row_height - 5),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            x += span
    return strip


def overlay_with_legend(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    *,
    alpha: float = 0.5,
    labels: Sequence[int] | None = None,
) -> np.ndarray:
    """`overlay_mask` with a legend strip below naming the classes present in `mask` (or `labels`, to give several
    overlays the same legend), background and void left out."""
    present = labels if labels is not None else [int(v) for v in np.unique(mask) if 0 < int(v) < 255]
    overlay = overlay_mask(image, mask, alpha=alpha)
    if not present:
        return overlay
    return np.concatenate([overlay, legend_strip(present, class_names, overlay.shape[1])], axis=0)


def contact_sheet(
    images: Sequence[np.ndarray],
    cols: int = 4,
    *,
    cell_size: tuple[int, int] | None = None,
    pad: int = 4,
    background: int = 255,
    captions: Sequence[str] | None = None,
) -> np.ndarray:
    """A grid image of `images` (RGB uint8, any sizes), `cols` per row, row-major.

    Each image is scaled to fit its cell (default cell: the largest image's size scaled so the cell is at most
    320 pixels wide) keeping its aspect ratio, centred, with `pad` pixels between cells. Optional captions are drawn
    at the top-left of each cell.

    Returns:
        RGB uint8 (rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3).
    """
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    if cell_size is None:
        max_h = max(img.shape[0] for img in images)
        max_w = max(img.shape[1] for img in images)
        scale = min(1.0, 320 / max_w)
        cell_size = (max(1, round(max_h * scale)), max(1, round(max_w * scale)))
    ch, cw = cell_size
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    sheet = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), background, dtype=np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        scale = min(ch / img.shape[0], cw / img.shape[1])
        h, w = max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        tile = cv2.resize(img, (w, h), interpolation=interp) if (h, w) != img.shape[:2] else img
        r, c = divmod(i, cols)
        y = pad + r * (ch + pad) + (ch - h) // 2
        x = pad + c * (cw + pad) + (cw - w) // 2
        sheet[y : y + h, x : x + w] = tile[..., :3]
        if captions is not None and captions[i]:
            cv2.putText(
                sheet,
                str(captions[i]),
                (pad + c * (cw + pad) + 3, pad + r * (ch + pad) + 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (0, 0, 0),
                2,
                cv2.LINE_AA,
            )
            cv2.putText(
                sheet,
                str(captions[i]),
                (pad + c * (cw + pad) + 3, pad + r * (ch + pad) + 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    return sheet


def write_image(path: Any, image: np.ndarray, *, quality: int = 92) -> None:
    """Write an RGB uint8 image (format by suffix) atomically."""
    from mobilevision.io import atomic_path

    with atomic_path(path) as tmp:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if str(tmp).lower().endswith((".jpg", ".jpeg")) else []
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR), params):
            raise OSError(f"cannot write image {path}")
