"""YOLO detection as Ultralytics lays it out.

    root/data.yaml           path: .   train: images/train   val: images/val   test: images/test (optional)
                             names: [kangaroo, ...]  or  names: {0: kangaroo, ...}
    root/images/train/a.jpg  root/labels/train/a.txt   one row per object: `class cx cy w h`, normalised to 0..1

A split is a folder of images, a text file listing images (relative to `path`), or a list of either. A label file
mirrors its image with the last `images` path part replaced by `labels`. Rows of more than five numbers are polygons
(`class x1 y1 x2 y2 ...`, Ultralytics segments) read as their bounding box. A missing or empty label file is a
background image. A class index beyond `names` or a malformed row is skipped with a warning naming the file and
counted (`unknown_class`, `malformed_rows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import BadSample
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import DetectionMeta, Transforms
from mobilevision.tasks.detection.data.listed import (
    IMAGE_SUFFIXES,
    Entry,
    ListedDetection,
    check_names,
    find_image,
    image_size,
    warn,
)

SPLITS = ("train", "val", "test")


def find_yaml(root: Path) -> Path | None:
    """`data.yaml` in `root`, else the one `*.yaml` / `*.yml` there that has `names`; None when there is none."""
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        try:
            if "names" in path.read_text(encoding="utf-8", errors="replace"):
                return path
        except OSError:
            continue
    return None


def read_data_yaml(path: Path) -> tuple[dict[str, Any], list[str], Path]:
    """(the yaml as a dict, class names in index order, the dataset root `path:` names).

    `path:` relative is relative to the yaml's folder; an absolute `path:` that does not exist (the exporting
    machine's) falls back to the yaml's folder.

    Raises:
        DatasetError: malformed yaml, no or a bad `names` (empty, duplicates, dict keys not 0..K-1), naming the file.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise DatasetError(f"{path}: malformed YAML{where}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names', 'train', 'val', got {type(data).__name__}")
    names = data.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if sorted(keys, key=str) != sorted(range(len(keys)), key=str) or not all(isinstance(k, int) for k in keys):
            raise DatasetError(f"{path}: 'names' keys must be the class indices 0..{len(keys) - 1}, got {keys!r}")
        names = [names[i] for i in range(len(keys))]
    class_names = check_names(names, f"{path}: 'names'")
    if "nc" in data and data["nc"] != len(class_names):
        raise DatasetError(f"{path}: 'nc' is {data['nc']!r} but 'names' has {len(class_names)} classes")
    base = data.get("path")
    root = path.parent
    if isinstance(base, str) and base.strip():
        candidate = Path(base) if os.path.isabs(base) else path.parent / base
        root = candidate if candidate.is_dir() else path.parent
    return data, class_names, root


def split_images(
    root: Path, spec: Any, source: str, notes: list[str] | None = None
) -> list[tuple[str, Path | None, str | None]]:
    """The images of one split entry: (name relative to `root`, path or None, defect or None), sorted by name.

    Raises:
        DatasetError: a split that names nothing that exists, naming the yaml and the entry.
    """
    specs = spec if isinstance(spec, list) else [spec]
    out: dict[str, tuple[Path | None, str | None]] = {}
    for item in specs:
        if not isinstance(item, str) or not item.strip():
            raise DatasetError(f"{source}: a split must be a folder or a list file, got {item!r}")
        path, refused = find_image(root, item)
        stripped = item.strip()
        while stripped.startswith("../"):
            stripped = stripped[3:]
        if (path is None or not path.exists()) and stripped != item.strip() and (root / stripped).exists():
            # Roboflow's export writes `train: ../train/images` beside a data.yaml in the dataset folder itself.
            path, refused = find_image(root, stripped)
            if notes is not None:
                notes.append(f"{source}: {item!r} read as {stripped!r} inside the dataset folder (Roboflow's paths)")
        if path is None:
            raise DatasetError(f"{source}: split {item!r}: {refused}")
        if path.is_dir():
            for image in sorted(path.rglob("*")):
                if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                    out[image.relative_to(root.resolve()).as_posix()] = (image, None)
        elif path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line:
                    name = line[2:] if line.startswith("./") else line
                    listed, why = find_image(root, name)
                    out[name] = (listed, why)
        else:
            raise DatasetError(f"{source}: split {item!r}: {path} is neither a folder nor a list file")
    return [(name, *out[name]) for name in sorted(out)]


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` part of the image's path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_yolo_rows(text: str, num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows `class cx cy w h` (or a polygon `class x1 y1 ... xn yn`, n >= 3) of one label file.

    Returns:
        (normalised boxes float64 (N, 4) as x1 y1 x2 y2 in 0..1 units, class indices int64 (N,), one problem line
        per skipped row: a class beyond `num_classes` starts with "class", a malformed row with "row").
    """
    boxes, classes, problems = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            problems.append(f"row {number}: not numbers: {line.strip()[:60]!r}")
            continue
        if not all(math.isfinite(v) for v in values) or not (
            len(values) == 4 or (len(values) >= 6 and not len(values) % 2)
        ):
            problems.append(f"row {number}: expected 'class cx cy w h' or a polygon, got {line.strip()[:60]!r}")
            continue
        if not 0 <= cls < num_classes:
            problems.append(f"class {cls} in row {number} is beyond the {num_classes} names")
            continue
        if len(values) == 4:
            cx, cy, w, h = values
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        else:
            xs, ys = values[0::2], values[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        boxes.append(box)
        classes.append(cls)
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(classes, np.int64), problems


def yolo_entries(root: Path, images: list[tuple[str, Path | None, str | None]], num_classes: int, counts: dict) -> list:
    """`Entry` rows of a split's images, boxes in pixels (the image's header size, EXIF orientation applied)."""
    entries = []
    for name, path, defect in images:
        entry = Entry(file_name=name, path=path, defect=defect)
        entries.append(entry)
        if path is None:
            continue
        labels = label_path(path)
        try:
            text = labels.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as error:
            entry.defect = f"label file {labels.name} unreadable ({error})"
            continue
        boxes, classes, problems = parse_yolo_rows(text, num_classes)
        for problem in problems:
            warn(str(labels), f"{problem}: skipped")
            counts["unknown_class" if problem.startswith("class") else "malformed_rows"] += 1
        if not text.strip():
            counts["empty_or_missing_labels"] += 1
        try:
            entry.width, entry.height = image_size(path)
        except BadSample as error:
            entry.defect = error.reason
            continue
        scale = np.array([entry.width, entry.height, entry.width, entry.height], np.float64)
        entry.boxes, entry.labels = boxes * scale, classes + 1
        entry.difficult = np.zeros(len(classes), bool)
    return entries


class YOLODetection(ListedDetection):
    """One split of a YOLO dataset (see the module docstring).

    Args:
        root: the dataset folder (holding the yaml) or the yaml file itself.
        split: `train`, `val` or `test`, a key of the yaml.
        names: force this class list (it must have as many names as the yaml).
        transforms: as `CocoDetection`.

    `file_name`s are relative to the yaml's `path`; the data's own class ids are the YOLO indices 0..K-1.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        names: Sequence[str] | None = None,
        transforms: Transforms | None = None,
    ) -> None:
        given = Path(root)
        self.yaml_path = given if given.is_file() else find_yaml(given) if given.is_dir() else None
        if self.yaml_path is None:
            raise DatasetError(f"{given}: no YOLO data.yaml (looked for data.yaml, or a *.yaml with 'names', in it)")
        data, class_names, self.root = read_data_yaml(self.yaml_path)
        if names is not None:
            forced = check_names(list(names), "names")
            if len(forced) != len(class_names):
                raise DatasetError(f"names has {len(forced)} classes but {self.yaml_path} has {len(class_names)}")
            class_names = forced
        if split not in data or data[split] in (None, ""):
            raise DatasetError(f"{self.yaml_path}: no {split!r} split (the yaml has {sorted(k for k in data)})")
        notes: list[str] = []
        images = split_images(self.root, data[split], f"{self.yaml_path}: {split!r}", notes)
        if not images:
            raise DatasetError(f"{self.yaml_path}: split {split!r} ({data[split]!r}) holds no image")
        counts = {"unknown_class": 0, "malformed_rows": 0, "empty_or_missing_labels": 0}
        entries = yolo_entries(self.root, images, len(class_names), counts)
        meta = DetectionMeta(["background", *class_names], [0, *range(len(class_names))])
        super().__init__(entries, meta, transforms=transforms, counts=counts, notes=notes, format="yolo")
