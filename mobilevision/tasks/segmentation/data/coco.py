"""COCO instances rendered to the 20 VOC classes: the paper's pre-training for VOC."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.jsonio import is_int, load_json
from mobilevision.data.labels import VOC_CLASSES, voc_class_of, with_background
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data.base import SegmentationDataset, Transform, _Defect, _Sample
from mobilevision.tasks.segmentation.masks import VOID


def _segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) to a bool (H, W) mask; None if empty.

    Raises:
        ValueError: a malformed segmentation.
    """
    if isinstance(segmentation, list):
        # Polygons with fewer than 3 points cover no area; pycocotools would fail on them.
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return None
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from the image's {[height, width]}")
        if isinstance(segmentation["counts"], list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError("segmentation is neither a polygon list nor an RLE dict")
    return coco_mask.decode(rle).astype(bool)


def render_voc_mask(
    annotations: Sequence[dict[str, Any]], height: int, width: int, category_to_class: dict[int, int]
) -> np.ndarray:
    """Render COCO instance annotations of one image to an (H, W) uint8 VOC semantic mask.

    Rules (deliberate choices):
    - categories not in `category_to_class` (non-VOC) stay background (0);
    - a crowd region (`iscrowd=1`) of a VOC class is void (255): it mixes instances and background, so any label
      would be wrong somewhere; crowd regions of other categories stay background;
    - overlapping instances: painted from the largest area to the smallest, so the smaller instance wins, since in
      photographs a smaller region overlapping a larger one is usually in front of it (a person on a sofa, a bottle
      on a table); instances are painted after crowd regions, so a delineated instance is never void.

    Raises:
        ValueError: a malformed segmentation (the caller names the file and annotation).
    """
    mask = np.zeros((height, width), np.uint8)
    instances: list[tuple[int, int, np.ndarray]] = []
    for annotation in annotations:
        label = category_to_class.get(annotation["category_id"])
        if label is None:
            continue
        binary = _segmentation_to_mask(annotation.get("segmentation"), height, width)
        if binary is None:
            continue
        if annotation.get("iscrowd", 0):
            mask[binary] = VOID
        else:
            instances.append((int(binary.sum()), label, binary))
    for _, label, binary in sorted(instances, key=lambda item: -item[0]):
        mask[binary] = label
    return mask


class COCOSemantic(SegmentationDataset):
    """COCO instances rendered to VOC semantic masks (21 classes, see `render_voc_mask`), for pre-training on VOC.

    Args:
        images_dir: the folder holding the images (e.g. `train2017`).
        annotation_file: a COCO instances JSON (e.g. `annotations/instances_train2017.json`).
        transform: albumentations-style callable, or None.
        keep_empty: keep images with no VOC-class annotation (all background). Dropped by default, as in the
            DeepLab COCO pre-training; their number is `report.extra["images_without_voc_classes"]`.
        with_orig_size: return `(image, mask, (h, w))`; see the module docstring.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        transform: Transform | None = None,
        *,
        keep_empty: bool = False,
        with_orig_size: bool = False,
    ) -> None:
        images_dir = Path(images_dir)
        annotation_file = Path(annotation_file)
        if not images_dir.is_dir():
            raise DatasetError(f"{images_dir}: image folder not found")
        super().__init__(root=images_dir, transform=transform, with_orig_size=with_orig_size)
        self.class_names = with_background(VOC_CLASSES)
        data = load_json(annotation_file)
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
        ):
            raise DatasetError(f"{annotation_file}: expected a COCO object with lists images, annotations, categories")
        voc_index = {name: i for i, name in enumerate(self.class_names)}
        self.category_to_class: dict[int, int] = {}
        known_categories: set[int] = set()
        for category in data["categories"]:
            try:
                cat_id, name = int(category["id"]), str(category["name"])
            except (KeyError, TypeError, ValueError, OverflowError):
                raise DatasetError(f"{annotation_file}: categories: malformed entry {category!r}") from None
            known_categories.add(cat_id)
            voc_name = voc_class_of(name)
            if voc_name is not None:
                self.category_to_class[cat_id] = voc_index[voc_name]
        images: dict[int, dict[str, Any]] = {}
        for image in data["images"]:
            try:
                images[int(image["id"])] = {
                    "file_name": str(image["file_name"]),
                    "height": int(image["height"]),
                    "width": int(image["width"]),
                }
            except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a width of inf
                raise DatasetError(f"{annotation_file}: images: malformed entry {image!r}") from None
        self._annotations: dict[int, list[dict[str, Any]]] = {}
        for annotation in data["annotations"]:
            if not isinstance(annotation, dict) or "image_id" not in annotation or "category_id" not in annotation:
                raise DatasetError(f"{annotation_file}: annotations: malformed entry {annotation!r}"[:300])
            ann_id = annotation.get("id", "?")
            # An int test first, as validate_coco does: an id that is a list or an object is unhashable.
            if not is_int(annotation["image_id"]) or annotation["image_id"] not in images:
                raise DatasetError(f"{annotation_file}: annotation {ann_id}: unknown image_id {annotation['image_id']}")
            if not is_int(annotation["category_id"]) or annotation["category_id"] not in known_categories:
                raise DatasetError(
                    f"{annotation_file}: annotation {ann_id}: unknown category_id {annotation['category_id']}"
                )
            if annotation["category_id"] in self.category_to_class:
                self._annotations.setdefault(annotation["image_id"], []).append(annotation)
        self._image_info = images
        empty = 0
        for image_id, info in images.items():
            if image_id not in self._annotations and not keep_empty:
                empty += 1
                continue
            self.report.images += 1
            try:
                path = resolve_inside(images_dir, info["file_name"])
            except BadSample as error:
                self.report.skip(info["file_name"], error.reason)
                continue
            if not path.is_file():
                self._skip_at_construction(path, "image file not found (listed in the annotation file)")
                continue
            self.samples.append(_Sample(id=Path(info["file_name"]).stem, image=path, mask=None, coco_id=image_id))
        if empty:
            self.report.count("images_without_voc_classes", empty)

    def _stated_size(self, sample: _Sample) -> tuple[int, int] | None:
        assert sample.coco_id is not None
        info = self._image_info[sample.coco_id]
        return info["width"], info["height"]

    def _read_mask(self, sample: _Sample, image: np.ndarray | None) -> np.ndarray:
        assert sample.coco_id is not None and image is not None
        info = self._image_info[sample.coco_id]
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise _Defect(
                self._name(sample.image),
                f"image is {width}x{height} but the annotation file says {info['width']}x{info['height']}",
            )
        try:
            return render_voc_mask(self._annotations.get(sample.coco_id, []), height, width, self.category_to_class)
        except (ValueError, TypeError, KeyError) as error:
            raise _Defect(self._name(sample.image), f"malformed segmentation in its annotations ({error})") from None
