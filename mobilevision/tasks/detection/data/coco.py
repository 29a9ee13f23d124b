"""COCO-format detection sets: COCO 2017 (`coco2017`), the synthetic shapes, any export (`CocoDetection`)."""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.jsonio import is_int, load_json
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import (
    MAX_SIDE,
    DetectionDataset,
    DetectionMeta,
    Transforms,
    _Record,
    coco_from_dict,
    sanitize_boxes,
)


def validate_coco(data: Any, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the structure of a COCO detection dict; return a copy with `area`/`iscrowd` filled where absent.

    Raises:
        DatasetError: naming `source` and the entry: not an object, missing lists, duplicate or unknown image or
            category ids, a `bbox` that is not four numbers.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{source}: missing or not a list: {key!r}")
    annotations = data.get("annotations", [])  # absent in image-info files such as test-dev: no boxes, not an error
    if not isinstance(annotations, list):
        raise DatasetError(f"{source}: not a list: 'annotations'")
    image_ids: set[int] = set()
    for position, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not is_int(image.get("id")) or not isinstance(image.get("file_name"), str):
            raise DatasetError(f"{source}: images[{position}]: needs an integer 'id' and a string 'file_name'")
        if image["id"] in image_ids:
            raise DatasetError(f"{source}: images[{position}]: duplicate image id {image['id']}")
        image_ids.add(image["id"])
    category_ids: set[int] = set()
    for position, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not is_int(category.get("id")) or "name" not in category:
            raise DatasetError(f"{source}: categories[{position}]: needs an integer 'id' and a 'name'")
        if category["id"] in category_ids:
            raise DatasetError(f"{source}: categories[{position}]: duplicate category id {category['id']}")
        category_ids.add(category["id"])
    fixed = []
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DatasetError(f"{source}: annotations[{position}]: not an object")
        name = f"annotation id {ann['id']!r}" if "id" in ann else f"annotations[{position}]"
        if "id" in ann and not is_int(ann["id"]):
            raise DatasetError(f"{source}: {name}: 'id' must be an integer")
        # is_int first: an id that is a list or an object is unhashable and would break the set lookup.
        if not is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
            raise DatasetError(f"{source}: {name}: unknown image id {ann.get('image_id')!r}")
        if not is_int(ann.get("category_id")) or ann["category_id"] not in category_ids:
            raise DatasetError(f"{source}: {name}: unknown category id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise DatasetError(f"{source}: {name}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        try:
            xywh = [float(v) for v in bbox]
        except OverflowError:  # JSON integers have no size limit; 1e400 as an int does not fit a float
            shown = reprlib.repr(bbox)
            raise DatasetError(f"{source}: {name}: 'bbox' holds a number too large for a float: {shown}") from None
        ann = dict(ann)
        ann.setdefault("id", position + 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", xywh[2] * xywh[3])
        fixed.append(ann)
    if len({a["id"] for a in fixed}) != len(fixed):
        raise DatasetError(f"{source}: annotation ids are not unique")
    return {**data, "annotations": fixed}


class CocoDetection(DetectionDataset):
    """A COCO-format detection set: `annotations` json + the `images` folder its `file_name`s are relative to.

    Args:
        images: image folder; names in the json that resolve outside it are refused (skipped, never read).
        annotations: COCO instances json (`images`, `categories`, optional `annotations`).
        transforms: `train_transforms(size)`, `eval_transforms(size)` or None (original size, no transform).
        meta: force this label mapping (e.g. the training set's for a validation set); the json's categories must
            be the same, otherwise `DatasetError`. Default: derived from the json, categories ordered by id.
    """

    def __init__(
        self,
        images: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        *,
        transforms: Transforms | None = None,
        meta: DetectionMeta | None = None,
    ) -> None:
        self.images_dir = Path(images)
        self.annotations_file = Path(annotations)
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: image folder not found")
        data = validate_coco(load_json(self.annotations_file), self.annotations_file)
        own_meta = DetectionMeta.from_categories(data["categories"])
        if meta is not None and meta.category_ids != own_meta.category_ids:
            raise DatasetError(
                f"{self.annotations_file}: categories {own_meta.category_ids[1:]} differ from the expected "
                f"{meta.category_ids[1:]}"
            )
        self.meta = meta or own_meta
        self.coco = coco_from_dict(data)
        self._records = []
        self._init_common(transforms)
        per_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann)
        crowd = dropped = clipped = 0
        for image in data["images"]:
            anns = per_image.get(image["id"], [])
            crowd += sum(1 for a in anns if a["iscrowd"])
            anns = [a for a in anns if not a["iscrowd"]]
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            width, height = image.get("width"), image.get("height")
            size_known = is_int(width) and is_int(height) and 0 < width < MAX_SIDE and 0 < height < MAX_SIDE
            boxes, keep, n_clipped = sanitize_boxes(xyxy, width if size_known else None, height if size_known else None)
            dropped += int((~keep).sum())
            clipped += n_clipped
            labels = np.array([self.meta.label_of(a["category_id"]) for a in anns], dtype=np.int64)[keep]
            try:
                path, defect = resolve_inside(self.images_dir, image["file_name"]), None
            except BadSample as error:
                path, defect = None, error.reason
            self._records.append(
                _Record(
                    image_id=image["id"],
                    file_name=image["file_name"],
                    path=path,
                    defect=defect,
                    width=width if size_known else None,
                    height=height if size_known else None,
                    boxes=boxes,
                    labels=labels,
                )
            )
        self.report = self._new_report()
        self.report.extra.update(dropped_boxes=dropped, clipped_boxes=clipped, crowd=crowd)


def coco2017(root: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> CocoDetection:
    """The standard layout: `root/annotations/instances_{split}2017.json` and `root/{split}2017/`."""
    root = Path(root)
    return CocoDetection(root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json", **kwargs)
