"""Synthetic shapes: a small COCO-format detection set with semantic masks, generated deterministically from a seed.

It is the embedded default for the demo and the tests, so it is built to have something to learn: textured noisy
backgrounds with clutter (lines, arcs, scribbles that belong to no class), five shape classes at random rotation,
aspect and colour, sizes log-uniform from about 12 px to 60 % of the image (many small objects), and overlaps kept
to at most half of any object hidden (a placement that would hide more is re-drawn), so every box is a shape one can
see. Shapes may run off the image edge; their boxes are clipped to it.

Layout written under `out_dir` (atomically: generated into a hidden sibling folder, then renamed):

    images/000000.jpg ...        RGB JPEG (quality 92)
    masks/000000.png ...         palette PNG, pixel = class index 1..K of the top-most shape, 0 = background
    annotations.json             COCO detection: images, annotations (bbox xywh of the whole shape clipped to the
                                 image, area = visible pixels), categories 1..K
    shapes.json                  the generation parameters; `ensure_shapes` compares it to decide whether to regenerate

Image `i` depends only on `(seed, i)` and the parameters, not on `num_images`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from mobilevision.errors import UserError

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
GENERATOR_VERSION = 1
MAX_HIDDEN = 0.5  # an object may lose at most this fraction of its area to later shapes or the image edge
_SUBPIXEL_BITS = 4  # cv2 fixed-point drawing: vertices at 1/16 px, so small shapes keep their exact geometry


@dataclass(frozen=True)
class ShapesPaths:
    """Where a generated set lives. `annotations` is COCO json; masks share the image stems."""

    root: Path
    images: Path
    masks: Path
    annotations: Path


def paths_of(root: str | os.PathLike[str]) -> ShapesPaths:
    root = Path(root)
    return ShapesPaths(root=root, images=root / "images", masks=root / "masks", annotations=root / "annotations.json")


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), flattened [r0, g0, b0, r1, ...]: class 1 red, 2 green, ..."""
    palette = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


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
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), start, start + rng.uniform(40, 200),
                        colour, thickness, cv2.LINE_AA)  # fmt: skip
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


def _render_image(
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
            box = [max(min(float(polygon[:, 0].min()), cx1 + float(xs.min())), 0.0),
                   max(min(float(polygon[:, 1].min()), cy1 + float(ys.min())), 0.0),
                   min(max(float(polygon[:, 0].max()), cx1 + float(xs.max()) + 1), float(width)),
                   min(max(float(polygon[:, 1].max()), cy1 + float(ys.max()) + 1), float(height))]  # fmt: skip
            objects.append(
                {"category_id": category, "box": box, "full_area": full_area, "visible": int(inside.sum())}
            )
            break
    # Sensor-like noise and an occasional blur over the whole picture, shapes included.
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 10))
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    categories = np.array([0] + [o["category_id"] for o in objects], np.uint8)
    return rgb, categories[instances], objects


def _generate_into(
    root: Path,
    *,
    num_images: int,
    seed: int,
    image_size: tuple[int, int] | None,
    size_range: tuple[int, int] | None,
    objects: tuple[int, int],
    empty_fraction: float,
    min_object_size: float,
    max_object_fraction: float,
    manifest: dict[str, Any],
) -> None:
    images_dir, masks_dir = root / "images", root / "masks"
    images_dir.mkdir(parents=True)
    masks_dir.mkdir()
    palette = voc_palette()
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        if size_range is not None:
            height, width = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        else:
            assert image_size is not None
            height, width = image_size
        count = 0 if rng.random() < empty_fraction else int(rng.integers(objects[0], objects[1] + 1))
        max_size = max(min_object_size * 1.5, max_object_fraction * min(height, width))
        rgb, mask, placed = _render_image(
            height, width, rng, num_objects=count, min_object_size=min_object_size, max_object_size=max_size
        )
        stem = f"{index:06d}"
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(images_dir / f"{stem}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        mask_image = Image.fromarray(mask)
        mask_image.putpalette(palette)
        mask_image.save(masks_dir / f"{stem}.png", optimize=False)
        image_id = index + 1
        coco_images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": width, "height": height})
        for obj in placed:
            x1, y1, x2, y2 = obj["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["category_id"],
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": float(obj["visible"]),
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {"description": "mobilevision synthetic shapes", "seed": seed, "version": GENERATOR_VERSION},
        "images": coco_images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    # Written last: its presence (with matching parameters) is what marks a folder complete.
    (root / "shapes.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _manifest(**params: Any) -> dict[str, Any]:
    plain = {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}
    return {"generator_version": GENERATOR_VERSION, **plain}


def generate_shapes(
    out_dir: str | os.PathLike[str],
    *,
    num_images: int,
    seed: int = 0,
    image_size: tuple[int, int] | None = (256, 256),
    size_range: tuple[int, int] | None = None,
    objects: tuple[int, int] = (1, 8),
    empty_fraction: float = 0.03,
    min_object_size: float = 12.0,
    max_object_fraction: float = 0.6,
    overwrite: bool = False,
) -> ShapesPaths:
    """Generate the shapes set into `out_dir` and return its paths.

    Args:
        num_images: how many images (ids 1..num_images, files 000000.jpg ...).
        seed: image `i` is drawn from `numpy.random.default_rng([seed, i])`.
        image_size: (H, W) of every image, used when `size_range` is None.
        size_range: (min, max) side length; each image draws H and W uniformly from it (overrides `image_size`).
        objects: (min, max) shapes attempted per image (placements that would hide more than half of a shape are
            re-drawn, up to 12 times, then given up, so an image can hold fewer).
        empty_fraction: fraction of images with no shape at all (background-only images, as in COCO).
        min_object_size: smallest shape extent in pixels; the largest is `max_object_fraction` of the shorter side.
        overwrite: replace an existing `out_dir`; otherwise an existing one is a `UserError`.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if size_range is None and (image_size is None or min(image_size) < 16):
        raise ValueError(f"image_size must be (H, W) with sides >= 16, got {image_size}")
    if size_range is not None and not (16 <= size_range[0] <= size_range[1]):
        raise ValueError(f"size_range must be (min, max) with 16 <= min <= max, got {size_range}")
    if not (0 <= objects[0] <= objects[1]):
        raise ValueError(f"objects must be (min, max) with 0 <= min <= max, got {objects}")
    if not 0 <= empty_fraction <= 1:
        raise ValueError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (choose another folder or pass overwrite / --overwrite)")
    manifest = _manifest(
        num_images=num_images, seed=seed, image_size=None if size_range else image_size, size_range=size_range,
        objects=objects, empty_fraction=empty_fraction, min_object_size=min_object_size,
        max_object_fraction=max_object_fraction,
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _generate_into(
            tmp / "set", num_images=num_images, seed=seed, image_size=image_size, size_range=size_range,
            objects=objects, empty_fraction=empty_fraction, min_object_size=min_object_size,
            max_object_fraction=max_object_fraction, manifest=manifest,
        )  # fmt: skip
        _install(tmp / "set", out, manifest, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths_of(out)


def _install(new: Path, out: Path, manifest: dict[str, Any], *, overwrite: bool) -> None:
    """Rename the finished folder into place; another process that finished the same set first is not an error."""
    if out.exists() and overwrite:
        # Move the old set aside first (a rename), so the window with no set at `out` is two renames long.
        old = new.parent / "old"
        os.replace(out, old)
    try:
        os.rename(new, out)
    except OSError:
        if _read_manifest(out) != manifest:  # lost a race to a different set: nothing sane to do but say so
            raise UserError(f"{out}: appeared while generating, with different parameters") from None


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "shapes.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: str | os.PathLike[str], **kwargs: Any) -> bool:
    """True when `root` holds a finished set generated with exactly these `generate_shapes` keyword arguments."""
    defaults = {
        "seed": 0, "image_size": (256, 256), "size_range": None, "objects": (1, 8), "empty_fraction": 0.03,
        "min_object_size": 12.0, "max_object_fraction": 0.6,
    }  # fmt: skip
    params = {**defaults, **kwargs}
    if params["size_range"] is not None:
        params["image_size"] = None
    root = Path(root)
    manifest = _read_manifest(root)
    want = json.loads(json.dumps(_manifest(**params)))  # tuples -> lists, as stored
    paths = paths_of(root)
    return manifest == want and paths.annotations.is_file() and paths.images.is_dir() and paths.masks.is_dir()


def ensure_shapes(root: str | os.PathLike[str], **kwargs: Any) -> ShapesPaths:
    """Return the set at `root`, generating it first when absent, unfinished, or made with other parameters.

    `kwargs` are those of `generate_shapes` (`num_images` required). Safe when several processes (DDP ranks) call it
    at once: each generates into its own temporary folder and the first rename wins.
    """
    if "num_images" not in kwargs:
        raise ValueError("ensure_shapes needs num_images")
    kwargs.pop("overwrite", None)
    if is_complete(root, **kwargs):
        return paths_of(root)
    root = Path(root)
    exists = root.exists()
    if exists and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    # Replace only what is ours to replace: a folder holding nothing but the shapes layout (a set made with other
    # parameters, or one damaged since), or an empty one. Anything else at that path is somebody's data.
    if exists and not {p.name for p in root.iterdir()} <= {"images", "masks", "annotations.json", "shapes.json"}:
        raise UserError(f"{root}: exists and is not a generated shapes set; refusing to overwrite it")
    return generate_shapes(root, overwrite=exists, **kwargs)


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise UserError(f"--size {text!r}: expected N or HxW") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise UserError(f"--size {text!r}: expected N or HxW")


def main(argv: Sequence[str]) -> int:
    """`mobilevision data shapes --out DIR --num-images N --seed S [--size HxW | --size-range MIN,MAX]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="mobilevision data shapes", description=main.__doc__)
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="256", help="image size: N (square) or HxW (default 256)")
    parser.add_argument("--size-range", default=None, help="MIN,MAX: draw each image's H and W from this range")
    parser.add_argument("--objects", default="1,8", help="MIN,MAX shapes per image (default 1,8)")
    parser.add_argument("--min-object-size", type=float, default=12.0)
    parser.add_argument("--max-object-fraction", type=float, default=0.6)
    parser.add_argument("--empty-fraction", type=float, default=0.03)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(list(argv))
    try:
        paths = generate_shapes(
            args.out,
            num_images=args.num_images,
            seed=args.seed,
            image_size=_parse_size(args.size),
            size_range=_parse_size(args.size_range) if args.size_range else None,
            objects=_parse_size(args.objects),
            empty_fraction=args.empty_fraction,
            min_object_size=args.min_object_size,
            max_object_fraction=args.max_object_fraction,
            overwrite=args.overwrite,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"wrote {args.num_images} images to {paths.root} ({paths.annotations.name}, images/, masks/)")
    return 0


class ShapesSplits:
    """The train and validation sets a shapes DataModule uses, generated on first use under `root`.

    Both tasks' DataModules share this, so detection and segmentation demos train on the very same generated sets.
    Validation draws from another seed (`seed + 1000003`), so its images are never trained on.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, num_train: int, num_val: int, seed: int, image_size: tuple[int, int]
    ) -> None:
        self.root = Path(root)
        self.params = {
            "train": {"num_images": num_train, "seed": seed, "image_size": tuple(image_size)},
            "val": {"num_images": num_val, "seed": seed + 1000003, "image_size": tuple(image_size)},
        }

    def ensure(self, split: str) -> ShapesPaths:
        """The split's paths, generating it first when absent or made with other parameters."""
        return ensure_shapes(self.root / split, **self.params[split])

    def ensure_all(self) -> None:
        for split in self.params:
            self.ensure(split)
