"""Drawing one synthetic shapes image: textured background with clutter, shapes of five classes placed so that no
object loses more than `MAX_HIDDEN` of its area, the class mask and the boxes (`mobilevision.data.shapes` writes the
sets)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
MAX_HIDDEN = 0.5  # an object may lose at most this fraction of its area to later shapes or the image edge
_SUBPIXEL_BITS = 4  # cv2 fixed-point drawing: vertices at 1/16 px, so small shapes keep their exact geometry


def _unit_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (V, 2) of a shape of radius about 1 centred on 0, randomly rotated and mildly stretched."""
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        points = np.stack([np.cos(angles), np.sin(angles)], 1)
    elif kind == "star":
        angles = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        points = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    else:
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[kind]
        angles = np.linspace(0, 2 * np.pi, sides, endpoint=False) - np.pi / 2
        points = np.stack([np.cos(angles), np.sin(angles)], 1)
    # A mild stretch before rotating: variety without turning a circle into something else.
    points = points * np.array([rng.uniform(0.85, 1.15), 1.0])
    theta = rng.uniform(0, 2 * np.pi) if kind != "circle" else 0.0
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return points @ rotation.T


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Low- and mid-frequency colour noise, a gradient, and clutter that belongs to no class. float32 (H, W, 3)."""
    base = rng.uniform(30, 225, size=3)
    coarse = rng.normal(0, rng.uniform(15, 50), size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    image = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC) + base
    cells = int(rng.integers(8, 32))
    fine = rng.normal(0, rng.uniform(4, 20), size=(max(2, height // cells), max(2, width // cells), 3))
    image += cv2.resize(fine.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.normal(size=2)
    image += (rng.uniform(-40, 40) * (gx * direction[0] / width + gy * direction[1] / height))[..., None]
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    # Clutter: strokes, arcs and scribbles with random colours, all thin, so no clutter looks like a filled shape.
    for _ in range(int(rng.integers(2, 12))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        thickness = int(rng.integers(1, 4))
        kind = rng.integers(0, 3)
        if kind == 0:
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(canvas, p1, p2, colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(5, max(6, width // 3))), int(rng.integers(5, max(6, height // 3))))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(
                canvas,
                centre,
                axes,
                float(rng.uniform(0, 180)),
                start,
                start + rng.uniform(40, 200),
                colour,
                thickness,
                cv2.LINE_AA,
            )
        else:
            steps = rng.normal(0, 8, size=(int(rng.integers(4, 12)), 2)).cumsum(0)
            points = (steps + [rng.uniform(0, width), rng.uniform(0, height)]).astype(np.int32)
            cv2.polylines(canvas, [points], False, colour, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32)


def _fill(height: int, width: int, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A (h, w, 3) float fill: a random colour far from `avoid` (the mean colour behind), maybe a gradient."""
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - avoid).sum() > 120:
            break
    fill = np.empty((height, width, 3), np.float32)
    fill[:] = colour
    if rng.random() < 0.5:
        ramp = np.linspace(-1, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = ramp[None, :, None] if ramp.size == width else ramp[:, None, None]
        fill += ramp * rng.uniform(10, 40)
    if rng.random() < 0.3:
        fill += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(rng.uniform(4, 15))
    return fill


def render_image(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    num_objects: int,
    min_object_size: float,
    max_object_size: float,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Draw one image. Returns (RGB uint8 (H, W, 3), class mask uint8 (H, W), objects with box/category/area)."""
    image = _background(height, width, rng)
    instances = np.zeros((height, width), np.uint8)  # 0 = background, k = k-th placed object (1-based)
    objects: list[dict[str, Any]] = []  # per placed object: category, box, full area (incl. off-image part)
    for _ in range(num_objects):
        for _attempt in range(12):
            category = int(rng.integers(1, len(CLASSES) + 1))
            size = math.exp(rng.uniform(math.log(min_object_size), math.log(max_object_size)))
            unit = _unit_polygon(CLASSES[category - 1], rng)
            extent = unit.max(0) - unit.min(0)
            polygon = (unit - unit.min(0)) * (size / extent.max())
            # The centre may sit near the edge so some shapes are cut by it (like real objects at the frame border).
            polygon += [rng.uniform(-0.3, 1.0) * (width - size * 0.4), rng.uniform(-0.3, 1.0) * (height - size * 0.4)]
            x1, y1 = np.floor(polygon.min(0)).astype(int)
            x2, y2 = np.ceil(polygon.max(0)).astype(int) + 1
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            if cx2 - cx1 < 2 or cy2 - cy1 < 2:
                continue
            # Coverage (0..255, anti-aliased) of the shape over its clipped box, drawn at sub-pixel precision.
            # cv2 puts pixel centres at integer coordinates; ours (and COCO's) are at +0.5, hence the half-pixel shift.
            local = np.round((polygon - [cx1 + 0.5, cy1 + 0.5]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
            coverage = np.zeros((cy2 - cy1, cx2 - cx1), np.uint8)
            cv2.fillPoly(coverage, [local], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
            inside = coverage >= 128
            full_area = float(cv2.contourArea(polygon.astype(np.float32)))
            if inside.sum() < MAX_HIDDEN * full_area or not inside.any():
                continue  # mostly off the image
            # Would this placement hide too much of an object already there?
            under = instances[cy1:cy2, cx1:cx2][inside]
            if under.any():
                hidden = np.bincount(under, minlength=len(objects) + 1)
                if any(
                    objects[k - 1]["visible"] - hidden[k] < (1 - MAX_HIDDEN) * objects[k - 1]["full_area"]
                    for k in np.nonzero(hidden[1:])[0] + 1
                ):
                    continue
                for k in np.nonzero(hidden[1:])[0] + 1:
                    objects[k - 1]["visible"] -= int(hidden[k])
            region = image[cy1:cy2, cx1:cx2]
            behind = region[inside].mean(0)
            alpha = (coverage.astype(np.float32) / 255.0)[..., None]
            region *= 1 - alpha
            region += alpha * _fill(cy2 - cy1, cx2 - cx1, rng, behind)
            instances[cy1:cy2, cx1:cx2][inside] = len(objects) + 1
            # The whole shape's box (occluded parts included), widened to every pixel we labelled: cv2's
            # anti-aliased fill can reach a fraction of a pixel past the exact outline.
            ys, xs = np.nonzero(inside)
            box = [
                max(min(float(polygon[:, 0].min()), cx1 + float(xs.min())), 0.0),
                max(min(float(polygon[:, 1].min()), cy1 + float(ys.min())), 0.0),
                min(max(float(polygon[:, 0].max()), cx1 + float(xs.max()) + 1), float(width)),
                min(max(float(polygon[:, 1].max()), cy1 + float(ys.max()) + 1), float(height)),
            ]
            objects.append({"category_id": category, "box": box, "full_area": full_area, "visible": int(inside.sum())})
            break
    # Sensor-like noise and an occasional blur over the whole picture, shapes included.
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 10))
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    categories = np.array([0] + [o["category_id"] for o in objects], np.uint8)
    return rgb, categories[instances], objects
