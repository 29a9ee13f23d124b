"""What every detection format shares: the label space (`DetectionMeta`), box repair, the reading path and the
collate function. See the package docstring for the contract."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

from mobilevision.data.dataset import ReportingDataset
from mobilevision.data.decode import BadSample
from mobilevision.data.report import DefectReport
from mobilevision.data.seeding import SampleKey
from mobilevision.tasks.detection.mosaic import Loaded, mosaic

Target = dict[str, Any]
Sample = tuple[Tensor, Target]
# An albumentations Compose or anything with its call convention: f(image=, bboxes=, labels=) -> dict, same keys.
Transforms = Callable[..., dict[str, Any]]

# A stated image side beyond this is not a real size (and would overflow float conversions): treated as unknown.
MAX_SIDE = 2**31


@dataclass
class DetectionMeta:
    """The contiguous label space of a dataset: label 0 is background, labels 1..K are its categories.

    `category_ids[label]` is the dataset's own category id of `label` (COCO's run 1..90 with gaps); entry 0 is 0.
    Plain lists of str and int, so `to_dict()` travels in a checkpoint and comes back with `from_dict`.
    """

    class_names: list[str]
    category_ids: list[int]
    _label_of: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(
                f"class_names and category_ids differ in length: {len(self.class_names)} != {len(self.category_ids)}"
            )
        if not self.class_names or self.class_names[0] != "background":
            raise ValueError(f"class_names[0] must be 'background', got {self.class_names[:1]}")
        if len(set(self.category_ids[1:])) != len(self.category_ids) - 1:
            raise ValueError(f"category_ids must be unique, got {self.category_ids}")
        self._label_of = {cid: label for label, cid in enumerate(self.category_ids) if label > 0}

    @property
    def num_classes(self) -> int:
        """K + 1: the classes a model of this label space predicts, background included (the package's one
        meaning of `num_classes`, as in `build_model`, `Detector` and the DataModules)."""
        return len(self.class_names)

    @property
    def num_object_classes(self) -> int:
        """K, the dataset's object classes (background not counted): COCO's 80, VOC's 20."""
        return len(self.class_names) - 1

    def label_of(self, category_id: int) -> int:
        """Contiguous label (1..K) of a dataset category id; KeyError if unknown."""
        return self._label_of[int(category_id)]

    def category_of(self, label: int) -> int:
        """Dataset category id of a contiguous label 1..K."""
        if not 1 <= int(label) <= self.num_object_classes:
            raise ValueError(f"label must be in 1..{self.num_object_classes}, got {label}")
        return self.category_ids[int(label)]

    @classmethod
    def from_categories(cls, categories: Iterable[dict[str, Any]]) -> DetectionMeta:
        """From COCO `categories` entries (`id`, `name`), ordered by id."""
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return cls(["background"] + [str(c["name"]) for c in ordered], [0] + [int(c["id"]) for c in ordered])

    def to_dict(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "category_ids": list(self.category_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectionMeta:
        return cls([str(n) for n in data["class_names"]], [int(i) for i in data["category_ids"]])


def sanitize_boxes(boxes: np.ndarray, width: float | None, height: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Repair x1 y1 x2 y2 boxes (N, 4) against an image of `width` x `height` (None: size unknown, only drop
    degenerate ones).

    Returns:
        (kept boxes float32 (M, 4), keep mask bool (N,), number of boxes clipped). Dropped: non-finite, width or
        height <= 0, or nothing left inside the image. Clipped: partly outside.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    clipped = boxes.copy()
    if width is not None and height is not None:
        clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    # Judged in float32, the dtype training uses: a side below float32's resolution rounds to 0 (log(0) in the box
    # coder: an infinite loss) and a coordinate beyond its range to inf.
    with np.errstate(over="ignore", invalid="ignore"):
        out = clipped.astype(np.float32)
    keep &= np.isfinite(out).all(1) & (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    n_clipped = int((keep & (clipped != boxes).any(1)).sum())
    return out[keep], keep, n_clipped


@dataclass
class _Record:
    """One image: where it is (or why it cannot be read) and its repaired training boxes."""

    image_id: int
    file_name: str
    path: Path | None
    defect: str | None  # set when the path was refused before any read
    width: int | None
    height: int | None
    boxes: np.ndarray  # float32 (N, 4) x1 y1 x2 y2, original pixels
    labels: np.ndarray  # int64 (N,)


class DetectionDataset(ReportingDataset):
    """The reading path every detection format shares: decode (in the annotation's frame), repair boxes against
    the decoded size, transform, convert to the target contract. A format fills `_records`, `coco` and `meta`."""

    _records: list[_Record]
    coco: COCO
    meta: DetectionMeta
    transforms: Transforms | None

    def _init_common(self, transforms: Transforms | None) -> None:
        self.transforms = transforms
        self.mosaic, self.mosaic_size = 0.0, 0
        self._init_reporting()

    def use_mosaic(self, probability: float, size: int) -> None:
        """Tile each training sample with three others, with `probability`, into a 2 `size` square before the
        transforms (`mobilevision.tasks.detection.mosaic`)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"the mosaic probability must be in [0, 1], got {probability}")
        self.mosaic, self.mosaic_size = float(probability), int(size)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def image_ids(self) -> list[int]:
        return [r.image_id for r in self._records]

    def _skip(self, index: int, reason: str) -> None:
        self.skip_sample(index, self._records[index].file_name, reason)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Decoded RGB uint8 (H, W, 3), boxes float32 (N, 4) and labels int64 (N,) before any transform, or None."""
        record = self._records[index]
        if record.defect is not None or record.path is None:
            self._skip(index, record.defect or "no path")
            return None
        stated = (record.width, record.height) if record.width and record.height else None
        try:
            # Annotated in the stored frame? Then EXIF rotation would misplace every box: see `read_image`.
            image = self.read_image(index, record.path, stated)
        except BadSample as error:
            self._skip(index, error.reason)
            return None
        height, width = image.shape[:2]
        boxes, labels = record.boxes, record.labels
        if (width, height) != (record.width, record.height) and len(boxes):
            # The annotation's stated size disagrees with the pixels (or was absent): keep targets inside the image,
            # and count what that repaired once, however many epochs read the image.
            boxes, keep, n_clipped = sanitize_boxes(boxes, width, height)
            labels = labels[keep]
            self.count_once(index, "dropped_boxes", int((~keep).sum()))
            self.count_once(index, "clipped_boxes", n_clipped)
        return image, boxes, labels

    def __getitem__(self, key: SampleKey) -> Sample | None:
        """`key` is an index, or `(index, seed)` from a training sampler to seed this sample's augmentation."""
        index = self.sample_index(self.transforms, key)
        loaded = self.load(index)
        if loaded is None:
            return None
        if self.mosaic:
            loaded = self._mosaic(index, key, loaded)
        image, boxes, labels = loaded
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target: Target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "image_id": self._records[index].image_id,
            "orig_size": orig_size,
            # The image's name in the dataset: a non-finite loss names the files of its batch.
            "file": self._records[index].file_name,
        }
        # HWC -> CHW as a view; the collate's stack makes the batch contiguous in one copy.
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), target

    def _mosaic(self, index: int, key: SampleKey, loaded: Loaded) -> Loaded:
        # Its own generator, seeded by the sample's key when the sampler gives one (exact resume), so the draws of
        # the transforms are the same whether or not this sample became a mosaic.
        seed = key[1] if isinstance(key, tuple) else None
        rng = np.random.default_rng(None if seed is None else [int(seed) % 2**32, 0x6D6F73])
        if len(self) < 2 or rng.random() >= self.mosaic:
            return loaded
        samples = [loaded]
        for partner in rng.integers(len(self), size=3):
            other = self.load(int(partner))
            if other is None:  # warned and counted by `load`: this sample stays single
                return loaded
            samples.append(other)
        return mosaic(samples, self.mosaic_size, rng)

    def _new_report(self) -> DefectReport:
        report = DefectReport(images=len(self._records))
        for key in ("dropped_boxes", "clipped_boxes", "crowd"):
            report.extra[key] = 0
        report.extra["object_classes"] = self.meta.num_object_classes
        return report


def coco_from_dict(dataset: dict[str, Any]) -> COCO:
    """A pycocotools COCO built from an in-memory dict, without its prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def collate_detection(batch: Sequence[Sample | None]) -> tuple[Tensor, list[Target]]:
    """Stack samples into (images uint8 [B, 3, H, W], list of B targets), dropping None (skipped samples).

    All images must share one size (the transforms resize them). An all-None batch gives a [0, 3, 0, 0] tensor.
    """
    samples = [s for s in batch if s is not None]
    if not samples:
        return torch.zeros((0, 3, 0, 0), dtype=torch.uint8), []
    shapes = {tuple(s[0].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"images in a batch must share a size (use a resizing transform), got {sorted(shapes)}")
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]
