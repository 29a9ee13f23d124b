"""The shared end of the user-data readers (VOC XML in any layout, YOLO, COCO from labelling tools): each parses its
files into `Entry` rows, one per image, and `ListedDetection` turns them into the package's detection dataset
(records, `.coco` ground truth in original pixels, `.meta`, `.report`), so the three formats read, repair and report
one way. `select` makes a split (a subset of the file names) without parsing anything again.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import IMAGE_SUFFIXES, BadSample, resolve_inside
from mobilevision.data.report import DataWarning
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


@dataclass
class Entry:
    """One image of a user dataset, as its annotation file states it.

    `file_name` is relative to the dataset root (posix), `boxes` float (N, 4) x1 y1 x2 y2 in original pixels, `labels`
    int64 (N,) in 1..K, `difficult` bool (N,) (VOC `difficult`, COCO `iscrowd`: kept in `.coco` as crowd regions).
    `defect`: why the image cannot be used (skipped at its first read, with a warning).
    """

    file_name: str
    path: Path | None
    width: int | None = None
    height: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    defect: str | None = None


def check_names(names: Any, source: str) -> list[str]:
    """A class list as given (`names:` in a yaml or a config): non-empty, strings, no duplicates.

    Raises:
        DatasetError: naming `source` and the offending entry.
    """
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"{source}: the class list is empty or not a list: {names!r}")
    out = []
    for position, name in enumerate(names):
        if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
            raise DatasetError(f"{source}: names[{position}]: a class name must be a non-empty string, got {name!r}")
        out.append(str(name).strip())
    seen: dict[str, int] = {}
    for position, name in enumerate(out):
        if name in seen:
            raise DatasetError(f"{source}: names[{position}]: class {name!r} appears twice (also names[{seen[name]}])")
        seen[name] = position
    return out


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as it is shown (EXIF orientation applied), from its header only.

    Raises:
        BadSample: not a readable image.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as header:
                width, height = header.size
                orientation = header.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise BadSample("file not found") from None
    except Exception:  # noqa: BLE001 - any header failure: not an image we can read
        raise BadSample("not a readable image") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def find_image(folder: Path, name: str) -> tuple[Path | None, str | None]:
    """`folder/name` resolved inside `folder`: (path, None), or (None, the reason) for a name escaping it."""
    try:
        return resolve_inside(folder, name), None
    except BadSample as error:
        return None, error.reason


def stem_images(folder: Path) -> dict[str, Path]:
    """Image files directly in `folder` by stem (the first in `IMAGE_SUFFIXES` order when two share a stem)."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(
            folder.iterdir(),
            key=lambda p: (
                (IMAGE_SUFFIXES.index(p.suffix.lower()), p.name) if p.suffix.lower() in IMAGE_SUFFIXES else (99, p.name)
            ),
        ):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.setdefault(path.stem, path)
    return found


def warn(file: str, message: str) -> None:
    """A per-file repair at construction (a row or an object dropped): one `DataWarning` naming the file."""
    warnings.warn(f"{file}: {message}", DataWarning, stacklevel=3)


class ListedDetection(DetectionDataset):
    """A detection dataset from parsed `Entry` rows (see the package docstring for the sample contract).

    Args:
        entries: one per image; image ids are 1..N in this order.
        meta: the label space (`category_ids` are the data's own class ids: YOLO's indices, the json's ids).
        transforms: `train_transforms(size)`, `eval_transforms(size)` or None.
        keep_difficult: train on difficult / crowd objects too.
        notes: normalisations made while parsing, one line each ("dropped category 0 'animals' ..."): in the report.
        counts: counters found while parsing (`malformed_rows`, `unknown_class`, ...): in the report.
        format: the format name, for the report.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        meta: DetectionMeta,
        *,
        transforms: Transforms | None = None,
        keep_difficult: bool = False,
        notes: Sequence[str] = (),
        counts: dict[str, int] | None = None,
        format: str = "",
        ids: Sequence[int] | None = None,
    ) -> None:
        self.meta = meta
        self.entries = list(entries)
        self.format = format
        self.notes = list(notes)
        self.counts = dict(counts or {})
        self.keep_difficult = keep_difficult
        self._records = []
        self._init_common(transforms)
        ids = list(ids) if ids is not None else list(range(1, len(self.entries) + 1))
        gt_images: list[dict[str, Any]] = []
        gt_annotations: list[dict[str, Any]] = []
        dropped = clipped = difficult = background = 0
        for image_id, entry in zip(ids, self.entries):
            size_ok = all(v is not None and 0 < v < MAX_SIDE for v in (entry.width, entry.height))
            width, height = (entry.width, entry.height) if size_ok else (None, None)
            boxes, keep, n_clipped = sanitize_boxes(entry.boxes, width, height)
            labels, hard = entry.labels.reshape(-1)[keep], entry.difficult.reshape(-1)[keep]
            dropped += int((~keep).sum())
            clipped += n_clipped
            difficult += int(hard.sum())
            background += int(len(boxes) == 0)
            train = np.ones(len(boxes), bool) if keep_difficult else ~hard
            self._records.append(
                _Record(image_id, entry.file_name, entry.path, entry.defect, width, height, boxes[train], labels[train])
            )
            gt_images.append({"id": image_id, "file_name": entry.file_name, "width": width or 0, "height": height or 0})
            for box, label, crowd in zip(boxes, labels, hard):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                gt_annotations.append(
                    {
                        "id": len(gt_annotations) + 1,
                        "image_id": image_id,
                        "category_id": meta.category_of(int(label)),
                        "bbox": [float(box[0]), float(box[1]), w, h],
                        "area": w * h,
                        "iscrowd": int(crowd),
                    }
                )
        categories = [
            {"id": cid, "name": name} for name, cid in zip(meta.class_names[1:], meta.category_ids[1:], strict=True)
        ]
        self.coco = coco_from_dict({"images": gt_images, "annotations": gt_annotations, "categories": categories})
        self.report = self._new_report()
        self.report.extra.update(dropped_boxes=dropped, clipped_boxes=clipped, difficult=difficult)
        self.report.extra.update(format=format, classes=", ".join(meta.class_names[1:]))
        self.report.extra.update(objects=len(gt_annotations), background_images=background, **self.counts)
        if self.notes:
            self.report.extra["notes"] = list(self.notes)

    @property
    def file_names(self) -> list[str]:
        return [e.file_name for e in self.entries]

    def select(self, file_names: Collection[str], *, transforms: Transforms | None = None) -> ListedDetection:
        """The images named in `file_names` (a split), image ids kept, read with `transforms`.

        Raises:
            DatasetError: when none of the names is in the dataset (an empty split).
        """
        wanted = set(file_names)
        chosen = [(i, e) for i, e in zip(self.image_ids, self.entries) if e.file_name in wanted]
        if not chosen:
            shown = sorted(wanted)[:3]
            raise DatasetError(f"the split is empty: none of {len(wanted)} names (e.g. {shown}) is in the dataset")
        return ListedDetection(
            [e for _, e in chosen],
            self.meta,
            transforms=transforms,
            keep_difficult=self.keep_difficult,
            notes=self.notes,
            counts=self.counts,
            format=self.format,
            ids=[i for i, _ in chosen],
        )

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        loaded = super().load(index)
        record = self._records[index]
        if (
            loaded is not None
            and record.width
            and (loaded[0].shape[1], loaded[0].shape[0])
            != (
                record.width,
                record.height,
            )
        ):
            # Labelling tools write a size the file does not have (resized after labelling, a wrong header).
            self.count_once(index, "size_disagrees_with_file")
        return loaded
