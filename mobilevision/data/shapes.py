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

from mobilevision.data.labels import voc_palette
from mobilevision.data.shapes_render import CLASSES, render_image
from mobilevision.errors import UserError

GENERATOR_VERSION = 1


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
        rgb, mask, placed = render_image(
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
        num_images=num_images,
        seed=seed,
        image_size=None if size_range else image_size,
        size_range=size_range,
        objects=objects,
        empty_fraction=empty_fraction,
        min_object_size=min_object_size,
        max_object_fraction=max_object_fraction,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _generate_into(
            tmp / "set",
            num_images=num_images,
            seed=seed,
            image_size=image_size,
            size_range=size_range,
            objects=objects,
            empty_fraction=empty_fraction,
            min_object_size=min_object_size,
            max_object_fraction=max_object_fraction,
            manifest=manifest,
        )
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
        "seed": 0,
        "image_size": (256, 256),
        "size_range": None,
        "objects": (1, 8),
        "empty_fraction": 0.03,
        "min_object_size": 12.0,
        "max_object_fraction": 0.6,
    }
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
