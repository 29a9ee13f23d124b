"""The joint formats: the synthetic shapes (mask files), COCO instances (VOC-class masks rendered from the same
annotations the boxes come from) and PASCAL VOC (XML boxes, `SegmentationClass` masks where an image has one)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.labels import VOC_CLASSES, voc_class_of, with_background
from mobilevision.data.shapes import paths_of
from mobilevision.data.splits import read_id_list
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import DetectionMeta
from mobilevision.tasks.detection.data.coco import CocoDetection
from mobilevision.tasks.detection.data.voc import VOCDetection
from mobilevision.tasks.multitask.data.base import MaskDefect, MultiTaskDataset, Transforms
from mobilevision.tasks.segmentation.data.coco import render_voc_mask
from mobilevision.tasks.segmentation.data.voc import resolve_sbd_root
from mobilevision.tasks.segmentation.masks import read_index_mask, read_sbd_mask


class ShapesMultiTask(MultiTaskDataset):
    """The synthetic shapes (`mobilevision.data.shapes`: `images/`, `masks/<stem>.png`, `annotations.json`), or any
    set in that layout: boxes and masks of the same objects in one label space (mask value = category id = label).

    Args:
        root: the set's folder.
        transforms, with_orig_mask: as `MultiTaskDataset`.
        meta: the expected label space; the json's categories must be the same (`DatasetError` otherwise).

    Raises:
        DatasetError: no `masks/` folder, category ids other than 1..K, or what `CocoDetection` refuses.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        transforms: Transforms | None = None,
        with_orig_mask: bool = False,
        meta: DetectionMeta | None = None,
    ) -> None:
        paths = paths_of(root)
        if not paths.masks.is_dir():
            raise DatasetError(f"{paths.masks}: mask folder not found (expected images/, masks/, annotations.json)")
        detection = CocoDetection(paths.images, paths.annotations, meta=meta)
        ids = detection.meta.category_ids
        if ids != list(range(len(ids))):
            raise DatasetError(f"{paths.annotations}: categories: ids must be 1..K (the mask values), got {ids[1:]}")
        self.root = paths.root
        super().__init__(detection, detection.meta.class_names, transforms=transforms, with_orig_mask=with_orig_mask)

    def has_mask(self, index: int) -> bool:
        return True  # every image of the layout has its mask file; a missing one is a defect (skipped)

    def mask_name(self, index: int) -> str:
        return f"masks/{Path(self.file_name(index)).stem}.png"

    def _read_mask(self, index: int, image: np.ndarray) -> np.ndarray:
        try:
            return read_index_mask(self.root / self.mask_name(index))
        except BadSample as error:
            raise MaskDefect(self.mask_name(index), error.reason) from None


class CocoMultiTask(MultiTaskDataset):
    """COCO instances: boxes over the json's categories (COCO's 80) and, from the same annotations, masks of the 20
    VOC classes (`render_voc_mask`, as `COCOSemantic`: other categories background, VOC-class crowds void).

    An image with no annotation of a VOC class has no mask (`has_mask` False: only its boxes train), counted in
    `.report.extra["images_without_mask"]`. Its boxes, COCO's, still train the detector.

    Args:
        images, annotations: the image folder and instances json (`train2017`, `instances_train2017.json`).
        transforms, with_orig_mask: as `MultiTaskDataset`.
        meta: the expected label space (e.g. the training set's for validation), as `CocoDetection`.
    """

    def __init__(
        self,
        images: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        *,
        transforms: Transforms | None = None,
        with_orig_mask: bool = False,
        meta: DetectionMeta | None = None,
    ) -> None:
        detection = CocoDetection(images, annotations, meta=meta)
        mask_class_names = with_background(VOC_CLASSES)
        coco = detection.coco
        # The annotations CocoDetection validated and indexed: no second read of the json.
        self.category_to_class: dict[int, int] = {}
        for category in coco.dataset["categories"]:
            voc_name = voc_class_of(str(category["name"]))
            if voc_name is not None:
                self.category_to_class[int(category["id"])] = mask_class_names.index(voc_name)
        self._voc_annotations: dict[int, list[dict[str, Any]]] = {}
        for image_id in detection.image_ids:
            voc = [a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in self.category_to_class]
            if voc:
                self._voc_annotations[image_id] = voc
        super().__init__(detection, mask_class_names, transforms=transforms, with_orig_mask=with_orig_mask)
        self.report.count("images_without_mask", len(self) - len(self._voc_annotations))

    def has_mask(self, index: int) -> bool:
        return self.detection.image_ids[index] in self._voc_annotations

    def _read_mask(self, index: int, image: np.ndarray) -> np.ndarray:
        record = self.detection._records[index]
        height, width = image.shape[:2]
        # Polygons and RLE are in the annotated size's pixels: rendered on another size they would be misplaced.
        if record.width is not None and (record.width, record.height) != (width, height):
            raise MaskDefect(
                record.file_name,
                f"image is {width}x{height} but the annotation file says {record.width}x{record.height}",
            )
        try:
            return render_voc_mask(self._voc_annotations[record.image_id], height, width, self.category_to_class)
        except (ValueError, TypeError, KeyError) as error:
            raise MaskDefect(record.file_name, f"malformed segmentation in its annotations ({error})") from None


class VOCMultiTask(MultiTaskDataset):
    """PASCAL VOC: boxes from `Annotations/*.xml` of an `ImageSets/Main` split (`VOCDetection`), and the image's
    mask where it has one: `SegmentationClass/<id>.png`, else `SegmentationClassAug/<id>.png`, else SBD's
    `cls/<id>.mat` (with `sbd_root`). An image with none (a detection-only image) has `has_mask` False; counted in
    `.report.extra["images_without_mask"]`.

    Args:
        root, split, years, keep_difficult: as `VOCDetection` (VOC 2012 `trainval` holds every segmentation image).
        meta: the detector's label space, e.g. COCO's to train beside `CocoMultiTask`: VOC's box labels are mapped
            into it by class name ("aeroplane" -> "airplane", ...). None: VOC's 20 classes.
        sbd_root: SBD's `benchmark_RELEASE` (or its `dataset` folder): its masks for images without a VOC one.
        withhold_masks: an `ImageSets/Segmentation` list (default `val`, VOC's segmentation benchmark) whose images
            get no mask, so training never sees the masks it is scored on (their boxes still train; VOC's detection
            benchmark is VOC2007 test). Counted as `masks_withheld`. None: use every mask.
        transforms, with_orig_mask: as `MultiTaskDataset`.

    Raises:
        DatasetError: as `VOCDetection`; `sbd_root` not an SBD folder; a year with `SegmentationClass/` but without
            the `withhold_masks` list; a VOC class with no counterpart in `meta`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "trainval",
        *,
        years: Sequence[str] | None = None,
        keep_difficult: bool = False,
        meta: DetectionMeta | None = None,
        sbd_root: str | os.PathLike[str] | None = None,
        withhold_masks: str | None = "val",
        transforms: Transforms | None = None,
        with_orig_mask: bool = False,
    ) -> None:
        detection = VOCDetection(root, split, years=years, keep_difficult=keep_difficult)
        sbd = None
        if sbd_root is not None:
            sbd = resolve_sbd_root(Path(sbd_root))
            if sbd is None:
                raise DatasetError(f"{sbd_root}: not an SBD folder (expected cls/ in it or in its dataset/ folder)")
        year_dirs = {d.name: d for d in detection._voc_dirs}
        withheld: dict[str, set[str]] = {name: set() for name in year_dirs}
        if withhold_masks is not None:
            for name, year_dir in year_dirs.items():
                if (year_dir / "SegmentationClass").is_dir():  # read_id_list: DatasetError naming a missing list
                    listed = year_dir / "ImageSets" / "Segmentation" / f"{withhold_masks}.txt"
                    withheld[name] = set(read_id_list(listed))
        self._masks: list[Path | None] = []
        n_withheld = 0
        for voc_id in detection.ids:
            year, name = voc_id.split("/", 1)
            if name in withheld[year]:
                n_withheld += 1
                self._masks.append(None)
                continue
            self._masks.append(self._find_mask(year_dirs[year], name, sbd))
        super().__init__(
            detection, with_background(VOC_CLASSES), transforms=transforms, with_orig_mask=with_orig_mask, meta=meta
        )
        self.report.count("images_without_mask", sum(m is None for m in self._masks))
        self.report.count("masks_withheld", n_withheld)

    @staticmethod
    def _find_mask(year_dir: Path, name: str, sbd: Path | None) -> Path | None:
        candidates = [(year_dir / "SegmentationClass", ".png"), (year_dir / "SegmentationClassAug", ".png")]
        if sbd is not None:
            candidates.append((sbd / "cls", ".mat"))
        for folder, suffix in candidates:
            try:
                path = resolve_inside(folder, f"{name}{suffix}")
            except BadSample:
                return None  # a listed id leaving its folder: VOCDetection already skips the sample for it
            if path.is_file():
                return path
        return None

    def has_mask(self, index: int) -> bool:
        return self._masks[index] is not None

    def mask_name(self, index: int) -> str:
        path = self._masks[index]
        if path is None:
            return self.file_name(index)
        if path.suffix == ".mat":
            return str(path)  # SBD's, outside the VOC folder
        year = self.file_name(index).split("/", 1)[0]
        return f"{year}/{path.parent.name}/{path.name}"  # named as the image is: VOC2012/SegmentationClass/<id>.png

    def _read_mask(self, index: int, image: np.ndarray) -> np.ndarray:
        path = self._masks[index]
        assert path is not None
        try:
            return read_sbd_mask(path) if path.suffix == ".mat" else read_index_mask(path)
        except BadSample as error:
            raise MaskDefect(self.mask_name(index), error.reason) from None
