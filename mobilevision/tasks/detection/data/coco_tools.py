"""COCO json as labelling tools write it (Label Studio, FiftyOne, CVAT, Roboflow), each quirk normalised with a line
in the report or refused with a `DatasetError` naming the file and the entry:

- category ids from 0 (Label Studio, FiftyOne): kept as the data's own ids (label 1 is category 0).
- Roboflow's extra parent category (id 0, e.g. 'animals') that no annotation uses: dropped, with a note.
- missing `area` / `iscrowd`: filled (area from the box, not crowd), with a note.
- images without annotations: background images (counted `background_images`).
- `file_name` with sub-folders (`images/a.jpg`) is relative to the images folder; when it is not found there (the
  tool's own upload path), the file of the same base name in the images folder is used (`found_by_base_name`).
- width/height disagreeing with the file: the boxes are kept inside the decoded image (`size_disagrees_with_file`).
- an annotation with a `segmentation` but no `bbox`: its polygon's bounding box.

Layouts: one json in `root` (Label Studio `result.json` beside `images/`), or Roboflow's per-split folders
(`train/_annotations.coco.json` beside its images).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.jsonio import is_int, load_json
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import DetectionMeta, Transforms
from mobilevision.tasks.detection.data.coco import validate_coco
from mobilevision.tasks.detection.data.listed import IMAGE_SUFFIXES, Entry, ListedDetection, check_names, find_image

ROBOFLOW_SPLITS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}


def find_coco_json(root: Path, split: str | None = None) -> Path | None:
    """The annotations json of `root` (or of Roboflow's `root/<split folder>/`); None when there is none."""
    if split is not None:
        for folder in ROBOFLOW_SPLITS.get(split, (split,)):
            found = sorted((root / folder).glob("*.json")) if (root / folder).is_dir() else []
            if found:
                return found[0]
    found = sorted(root.glob("*.json"))
    if split is None and not found:
        found = sorted(root.glob("*/*.json"))
    return found[0] if found else None


def normalise_tool_coco(data: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """Normalise a labelling tool's COCO dict; return (the fixed dict, one note per normalisation).

    Raises:
        DatasetError: structure (see `validate_coco`), an empty or duplicated category name, naming the entry.
    """
    notes: list[str] = []
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        fixed_anns = []
        for position, ann in enumerate(data["annotations"]):
            seg = ann.get("segmentation") if isinstance(ann, dict) else None
            if (
                isinstance(ann, dict)
                and "bbox" not in ann
                and isinstance(seg, list)
                and seg
                and isinstance(seg[0], list)
            ):
                points = np.array([v for poly in seg for v in poly], np.float64).reshape(-1, 2)
                if len(points):
                    x1, y1 = points.min(0)
                    x2, y2 = points.max(0)
                    ann = {**ann, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
                    notes.append(f"annotations[{position}]: no 'bbox', its polygon's bounding box used")
            fixed_anns.append(ann)
        data = {**data, "annotations": fixed_anns}
        missing = sum(1 for a in fixed_anns if isinstance(a, dict) and ("area" not in a or "iscrowd" not in a))
        if missing:
            notes.append(f"{missing} annotations without 'area' or 'iscrowd': area from the box, not crowd")
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        annotations = data.get("annotations")
        # A non-list `annotations` (e.g. `true`) is left for `validate_coco` to refuse in one line.
        used = (
            {a.get("category_id") for a in annotations if isinstance(a, dict)}
            if isinstance(annotations, list)
            else set()
        )
        kept = []
        for category in data["categories"]:
            unused_parent = (
                isinstance(category, dict)
                and category.get("id") == 0
                and is_int(category.get("id"))
                and 0 not in used
                # Roboflow's parent: the other categories name it as their supercategory
                and any(
                    isinstance(c, dict) and c.get("supercategory") == category.get("name") for c in data["categories"]
                )
            )
            if unused_parent:
                notes.append(f"dropped category 0 {category.get('name')!r} with no annotations (a parent category)")
            else:
                kept.append(category)
        data = {**data, "categories": kept}
    data = validate_coco(data, source)
    check_names([c["name"] for c in data["categories"]], f"{source}: categories")
    if any(c["id"] == 0 for c in data["categories"]):
        notes.append("category ids start at 0 (Label Studio, FiftyOne): kept as the data's own ids")
    return data, notes


def _images_by_base_name(folder: Path) -> dict[str, Path]:
    """Image files anywhere under `folder` by base name (names found twice are left out: ambiguous)."""
    found: dict[str, Path | None] = {}
    for path in sorted(folder.resolve().rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found[path.name] = None if path.name in found else path
    return {name: path for name, path in found.items() if path is not None}


class ToolCocoDetection(ListedDetection):
    """A COCO json from a labelling tool and its images folder (see the module docstring).

    Args:
        annotations: the json file.
        images: the folder its `file_name`s are relative to (default: the json's folder).
        transforms, keep_difficult: as `CocoDetection` (crowd annotations are not trained on unless kept).
    """

    def __init__(
        self,
        annotations: str | os.PathLike[str],
        images: str | os.PathLike[str] | None = None,
        *,
        transforms: Transforms | None = None,
        keep_difficult: bool = False,
    ) -> None:
        self.annotations_file = Path(annotations)
        self.images_dir = Path(images) if images is not None else self.annotations_file.parent
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: image folder not found")
        data, notes = normalise_tool_coco(load_json(self.annotations_file), str(self.annotations_file))
        meta = DetectionMeta.from_categories(data["categories"])
        per_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann)
        counts = {"found_by_base_name": 0}
        by_base: dict[str, Path] | None = None
        entries = []
        for image in sorted(data["images"], key=lambda i: i["file_name"]):
            name = image["file_name"]
            path, refused = find_image(self.images_dir, name)
            if path is None or not path.is_file():
                base = name.replace("\\", "/").rsplit("/", 1)[-1]
                if by_base is None:
                    by_base = _images_by_base_name(self.images_dir)
                if base in by_base:
                    path, refused = by_base[base], None
                    name = path.relative_to(self.images_dir.resolve()).as_posix()
                    counts["found_by_base_name"] += 1
            anns = per_image.get(image["id"], [])
            xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
            width, height = image.get("width"), image.get("height")
            entries.append(
                Entry(
                    file_name=name,
                    path=path,
                    width=width if is_int(width) else None,
                    height=height if is_int(height) else None,
                    boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                    labels=np.array([meta.label_of(a["category_id"]) for a in anns], np.int64),
                    difficult=np.array([bool(a["iscrowd"]) for a in anns], bool),
                    defect=refused,
                )
            )
        super().__init__(
            entries,
            meta,
            transforms=transforms,
            keep_difficult=keep_difficult,
            notes=notes,
            counts=counts,
            format="coco",
        )
