"""Tiny segmentation samples the data tests write: random images, masks with a void border, a VOC2012 tree."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mobilevision.tasks.segmentation.masks import write_palette_png

H, W = 10, 12


def image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_l(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path)


def mask_of(seed: int, height: int = H, width: int = W, num_classes: int = 21) -> np.ndarray:
    mask = np.random.default_rng(seed).integers(0, num_classes, (height, width)).astype(np.uint8)
    mask[0, :] = 255  # a void border, as VOC draws around objects
    return mask


def voc_root(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    return voc


def write_list(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def add_voc_sample(voc: Path, id_: str, seed: int, *, mask: np.ndarray | None = None) -> np.ndarray:
    write_jpg(voc / "JPEGImages" / f"{id_}.jpg", image(seed))
    mask = mask_of(seed) if mask is None else mask
    write_palette_png(voc / "SegmentationClass" / f"{id_}.png", mask)
    return mask
