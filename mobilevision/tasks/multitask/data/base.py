"""What every joint format shares: the reading path on top of a detection dataset, the label mapping between
detector label spaces, the concatenation that keeps per-sample seeding, the joint transforms and the collate."""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from mobilevision.data.decode import BadSample
from mobilevision.data.labels import check_label_space, voc_class_of
from mobilevision.data.report import DefectReport
from mobilevision.data.seeding import SampleKey
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection import transforms as detection_transforms
from mobilevision.tasks.detection.data.base import DetectionDataset, DetectionMeta, coco_from_dict, collate_detection
from mobilevision.tasks.detection.transforms import MEAN_FILL

# MaskDefect: one sample's mask cannot be used (`file`, `reason`): the segmentation readers' type.
from mobilevision.tasks.segmentation.data.base import MaskDefect
from mobilevision.tasks.segmentation.masks import VOID, check_labels

Target = dict[str, Any]
Sample = tuple[Tensor, Target]
# An albumentations Compose or anything with its call convention: f(image=, bboxes=, labels=, mask=) -> same keys.
Transforms = Any

__all__ = [
    "ConcatMultiTask",
    "MaskDefect",
    "MultiTaskDataset",
    "collate_multitask",
    "eval_transforms",
    "label_mapping",
    "train_transforms",
]


def label_mapping(source: DetectionMeta, target: DetectionMeta) -> np.ndarray:
    """A lookup table taking `source` labels (0..K) to `target` labels, matching classes by name, a COCO name and
    its VOC class (`labels.voc_class_of`: "airplane" and "aeroplane", "tv" and "tvmonitor") counting as the same.

    Raises:
        DatasetError: a source class has no counterpart in `target` (naming them), or two target classes are the
            same class under these names.
    """

    def key(name: str) -> str:
        return voc_class_of(name) or name

    target_label: dict[str, int] = {}
    for label, name in enumerate(target.class_names[1:], start=1):
        if key(name) in target_label:
            raise DatasetError(f"target label space names {key(name)!r} twice (as {name!r} and another alias)")
        target_label[key(name)] = label
    missing = [name for name in source.class_names[1:] if key(name) not in target_label]
    if missing:
        raise DatasetError(
            f"classes {missing} have no counterpart among the detector's {target.num_object_classes} "
            f"classes ({target.class_names[1:6]}...)"
        )
    return np.array([0] + [target_label[key(name)] for name in source.class_names[1:]], dtype=np.int64)


def _remap_coco(coco: COCO, source: DetectionMeta, target: DetectionMeta, lut: np.ndarray) -> COCO:
    """`coco` (in `source`'s category ids) with every annotation in `target`'s ids and categories."""
    annotations = [
        {**a, "category_id": target.category_ids[int(lut[source.label_of(a["category_id"])])]}
        for a in coco.dataset["annotations"]
    ]
    categories = [{"id": cid, "name": name} for name, cid in zip(target.class_names[1:], target.category_ids[1:])]
    return coco_from_dict({**coco.dataset, "annotations": annotations, "categories": categories})


class MultiTaskDataset(Dataset, ABC):
    """A detection dataset whose images also carry a semantic mask: the detection reader decodes the image and
    gives its boxes (with its skip, repair and report bookkeeping), a format adds the mask (`_read_mask`).

    Args:
        detection: the format's detection dataset, built without transforms (image, boxes and mask are transformed
            together here).
        mask_class_names: the segmentation label space, background first.
        transforms: `train_transforms(size)`, `eval_transforms(size)` or None (original size).
        with_orig_mask: add `orig_mask` (the mask before any transform) to every target: evaluation datasets.
        meta: the detector's label space when it is not the reader's own: box labels are mapped into it by class
            name (`label_mapping`), and `.coco` is rewritten in its category ids. None: the reader's.

    `.report` is the detection reader's: a mask defect (unreadable, missing, of another size than its image, labels
    outside the label space) skips the sample there, with a warning naming the file, counted once.
    """

    def __init__(
        self,
        detection: DetectionDataset,
        mask_class_names: Sequence[str],
        *,
        transforms: Transforms | None = None,
        with_orig_mask: bool = False,
        meta: DetectionMeta | None = None,
    ) -> None:
        if detection.transforms is not None:
            raise ValueError(
                "build the detection dataset with transforms=None: the joint dataset transforms image, "
                "boxes and mask together"
            )
        check_label_space(list(mask_class_names), source=f"{type(self).__name__} mask classes")
        self.detection = detection
        self.mask_class_names = list(mask_class_names)
        self.transforms = transforms
        self.with_orig_mask = with_orig_mask
        self.meta: DetectionMeta = detection.meta
        self.coco: COCO = detection.coco
        self._label_lut: np.ndarray | None = None
        if meta is not None and meta != detection.meta:
            self._label_lut = label_mapping(detection.meta, meta)
            self.coco = _remap_coco(detection.coco, detection.meta, meta, self._label_lut)
            self.meta = meta

    @property
    def report(self) -> DefectReport:
        return self.detection.report

    @property
    def num_mask_classes(self) -> int:
        return len(self.mask_class_names)

    @property
    def image_ids(self) -> list[int]:
        return self.detection.image_ids

    def __len__(self) -> int:
        return len(self.detection)

    def file_name(self, index: int) -> str:
        """Sample `index`'s image as the dataset lists it (what a skipped sample is named by)."""
        return self.detection._records[index].file_name

    def mask_name(self, index: int) -> str:
        """What a mask defect of sample `index` is reported under: its mask file, or (a mask rendered from the
        annotations) its image."""
        return self.file_name(index)

    @abstractmethod
    def has_mask(self, index: int) -> bool:
        """Whether sample `index` has a mask (known from the annotations, without reading any file)."""

    @abstractmethod
    def _read_mask(self, index: int, image: np.ndarray) -> np.ndarray:
        """The mask of sample `index` (which `has_mask`) for its decoded `image`: (H, W) class indices, 255 void.

        Raises:
            MaskDefect: naming the offending file and the reason.
        """

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """Image RGB uint8 (H, W, 3), boxes float32 (N, 4), labels int64 (N,) in `meta`'s label space and mask uint8
        (H, W) or None (no mask), before any transform; None after a skip (warned and reported)."""
        loaded = self.detection.load(index)
        if loaded is None:
            return None
        image, boxes, labels = loaded
        mask = None
        if self.has_mask(index):
            try:
                mask = self._read_mask(index, image)
                if mask.shape != image.shape[:2]:
                    (mh, mw), (ih, iw) = mask.shape[:2], image.shape[:2]
                    raise MaskDefect(self.mask_name(index), f"mask is {mw}x{mh} (WxH) but its image is {iw}x{ih}")
                try:
                    mask = check_labels(mask, self.num_mask_classes)
                except BadSample as error:
                    raise MaskDefect(self.mask_name(index), error.reason) from None
            except MaskDefect as defect:
                self.detection.skip_sample(index, defect.file, defect.reason)
                return None
        if self._label_lut is not None:
            labels = self._label_lut[labels]
        return image, boxes, labels, mask

    def __getitem__(self, key: SampleKey) -> Sample | None:
        """`key` is an index, or `(index, seed)` from a training sampler to seed this sample's augmentation."""
        index = self.detection.sample_index(self.transforms, key)
        loaded = self.load(index)
        if loaded is None:
            return None
        image, boxes, labels, mask = loaded
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        has_mask = mask is not None
        if mask is None:
            mask = np.full(orig_size, VOID, np.uint8)
        orig_mask = mask
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, labels=labels, mask=mask)
            image, mask = out["image"], out["mask"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target: Target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "image_id": self.detection._records[index].image_id,
            "orig_size": orig_size,
            "file": self.file_name(index),
            "mask": torch.from_numpy(np.asarray(mask).astype(np.int64)),  # a writable copy
            # Every format here lists a box annotation for each of its images (one listing no object is a
            # background image): all train the detector. The key is the contract's, for mask-only sources.
            "has_boxes": True,
            "has_mask": has_mask,
        }
        if self.with_orig_mask:
            target["orig_mask"] = torch.from_numpy(orig_mask.astype(np.int64))
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), target


class ConcatMultiTask(Dataset):
    """Joint datasets one after the other (COCO then VOC), in one label space each for boxes and masks.

    Unlike `torch.utils.data.ConcatDataset` it passes the training sampler's `(index, seed)` keys on, so every
    sample's augmentation stays seeded (exact resume). `.reports` are the parts' reports.

    Raises:
        ValueError: no dataset, or parts whose box (`meta`) or mask label spaces differ.
    """

    def __init__(self, datasets: Sequence[MultiTaskDataset]) -> None:
        if not datasets:
            raise ValueError("ConcatMultiTask needs at least one dataset")
        first = datasets[0]
        for dataset in datasets[1:]:
            if dataset.meta != first.meta:
                raise ValueError(
                    f"{type(dataset).__name__}: box classes differ from {type(first).__name__}'s; give "
                    "it meta= to map its labels into theirs"
                )
            if dataset.mask_class_names != first.mask_class_names:
                raise ValueError(f"{type(dataset).__name__}: mask classes differ from {type(first).__name__}'s")
        self.datasets = list(datasets)
        self.meta = first.meta
        self.mask_class_names = first.mask_class_names
        self._ends = np.cumsum([len(d) for d in self.datasets]).tolist()

    @property
    def reports(self) -> list[DefectReport]:
        return [d.report for d in self.datasets]

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, key: SampleKey) -> Sample | None:
        index = key[0] if isinstance(key, tuple) else key
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        part = bisect.bisect_right(self._ends, index)
        local = index - (self._ends[part - 1] if part else 0)
        return self.datasets[part][(local, key[1]) if isinstance(key, tuple) else local]


def train_transforms(
    size: int | tuple[int, int],
    *,
    photometric: bool = True,
    zoom_out: bool = True,
    max_zoom: float = 4.0,
    min_iou_crop: bool = True,
    hflip: bool = True,
    fill: tuple[int, int, int] = MEAN_FILL,
    seed: int | None = None,
) -> A.Compose:
    """The SSD training augmentation (`detection.transforms.train_transforms`, same switches) moving the mask with
    the image and boxes: the zoom-out canvas is void (255) in the mask, the resize samples it nearest-exact.

    The crop keeps SSD's rule for boxes (an object whose centre leaves the crop is no detection target), while the
    mask keeps every pixel the crop shows, that object's too: it is still right about what those pixels are.
    """
    return detection_transforms.train_transforms(
        size,
        photometric=photometric,
        zoom_out=zoom_out,
        max_zoom=max_zoom,
        min_iou_crop=min_iou_crop,
        hflip=hflip,
        fill=fill,
        fill_mask=VOID,
        seed=seed,
    )


def eval_transforms(size: int | tuple[int, int]) -> A.Compose:
    """Evaluation: image, boxes and mask resized to `size` (square input, as the detector is evaluated); score the
    segmentation against `orig_mask` after resizing the logits back to it."""
    return detection_transforms.eval_transforms(size)


def collate_multitask(batch: Sequence[Sample | None]) -> tuple[Tensor, list[Target]]:
    """Stack samples into (images uint8 [B, 3, H, W], list of B targets), dropping None (skipped samples); an
    all-None batch gives a [0, 3, 0, 0] tensor and [] (as `collate_detection`).

    Raises:
        ValueError: images of different sizes, or a mask not of its image's size (a transform that missed it).
    """
    for sample in batch:
        if sample is not None and tuple(sample[1]["mask"].shape) != tuple(sample[0].shape[1:]):
            raise ValueError(
                f"{sample[1]['file']}: mask {tuple(sample[1]['mask'].shape)} is not of its image's size "
                f"{tuple(sample[0].shape[1:])}"
            )
    return collate_detection(batch)
