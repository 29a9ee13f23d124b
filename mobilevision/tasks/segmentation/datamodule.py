"""Lightning DataModules for segmentation: PASCAL VOC 2012 (+ SBD train_aug), COCO rendered to VOC classes, shapes.

Evaluation runs on whole images padded at the bottom/right to a multiple of the output stride (void in the mask), the
VOC protocol. In distributed runs evaluation batches are split without repeats, so the confusion matrix, summed over
processes, counts every image exactly once and the mIoU equals a single-process run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from mobilevision.data.labels import VOC_CLASSES, check_label_space, with_background
from mobilevision.data.loaders import eval_loader, train_loader
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.data.shapes import ShapesSplits
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data import (
    COCOSemantic,
    ShapesSegmentation,
    VOCSegmentation,
    check_voc_layout,
    collate_segmentation,
    eval_transforms,
    train_transforms,
)


class SegmentationDataModule(pl.LightningDataModule):
    """What every segmentation DataModule shares.

    Args:
        input_size: training crop side (513 in the DeepLab recipe); linked to the model by the CLI.
        scale: random scale range of the training augmentation.
        batch_size: images per process and step.
        num_workers: DataLoader workers per process.
        eval_multiple: evaluation images are padded to a multiple of this (the output stride).
        eval_batch_size: evaluation batch. Each image is still run on its own canvas (see `eval_transforms`), so
            the scores do not depend on it.

    Evaluation runs on whole images padded at the bottom/right to at least `input_size` and then to a multiple of
    `eval_multiple` (the TF DeepLab reference pads VOC's <= 500 px images to its 513 crop size). The checkpoint
    records this rule, so `Predictor` and `mobilevision predict` preprocess exactly as validation does.
    """

    class_names: list[str]

    def __init__(
        self,
        *,
        input_size: int = 513,
        scale: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 16,
        num_workers: int = 4,
        eval_multiple: int = 16,
        eval_batch_size: int = 8,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.scale = tuple(scale)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.eval_multiple = eval_multiple
        self.eval_batch_size = eval_batch_size
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Classes including background: what the model predicts (checked: background first, no name twice)."""
        check_label_space(self.class_names, source=type(self).__name__)
        return len(self.class_names)

    def train_transforms(self) -> Any:
        return train_transforms(self.input_size, self.scale)

    def eval_transforms(self) -> Any:
        return eval_transforms("pad", size=self.input_size, multiple=self.eval_multiple)

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "setup('fit') first"
        return train_loader(
            self.train_dataset,
            self.trainer,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_segmentation,
        )

    def _eval_loader(self, dataset: Dataset | None) -> DataLoader:
        assert dataset is not None, "setup() first"
        return eval_loader(
            dataset,
            batch_size=self.eval_batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_segmentation,
            each_image_once=True,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset if self.test_dataset is not None else self.val_dataset)


class VOCSegmentationDataModule(SegmentationDataModule):
    """PASCAL VOC 2012: by default the paper's setting, train on `train_aug` (VOC train + SBD - val), evaluate on val.

    Args:
        root: `VOCdevkit/VOC2012` or `VOCdevkit`.
        train_split, val_split: split names (`train_aug`, `train`, `val`, `trainval`).
        sbd_root: `benchmark_RELEASE` for `train_aug` (found next to the VOC folder when None).
    """

    def __init__(
        self,
        *,
        root: str,
        train_split: str = "train_aug",
        val_split: str = "val",
        sbd_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.train_split, self.val_split, self.sbd_root = root, train_split, val_split, sbd_root
        self.class_names = with_background(VOC_CLASSES)
        # The layout is checked here, at construction, so a wrong root is reported before the model is built (and
        # before its ImageNet weights are fetched); the splits' files are read in `setup`.
        check_voc_layout(root, val_split)

    def setup(self, stage: str) -> None:
        n = self.num_classes
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = VOCSegmentation(
                self.root, self.train_split, self.train_transforms(), num_classes=n, sbd_root=self.sbd_root
            )
        if self.val_dataset is None:
            self.val_dataset = VOCSegmentation(self.root, self.val_split, self.eval_transforms(), num_classes=n)


class COCOSegmentationDataModule(SegmentationDataModule):
    """COCO instances rendered to the 20 VOC classes: the paper's pre-training for VOC.

    Args:
        train_images, train_annotations: COCO training images and instances json.
        val_images, val_annotations: COCO validation pair; or give `voc_root` to validate on VOC 2012 val.
        voc_root: evaluate on VOC 2012 `val` instead of COCO val.
    """

    def __init__(
        self,
        *,
        train_images: str,
        train_annotations: str,
        val_images: str | None = None,
        val_annotations: str | None = None,
        voc_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if voc_root is None and (val_images is None or val_annotations is None):
            raise ValueError("give val_images and val_annotations, or voc_root to validate on VOC 2012 val")
        self.train_pair = (train_images, train_annotations)
        self.val_pair = (val_images, val_annotations)
        self.voc_root = voc_root
        self.class_names = with_background(VOC_CLASSES)
        # Checked before the model is built: every path named exists (the files are parsed in `setup`).
        for name, value in (
            ("train_images", train_images),
            ("train_annotations", train_annotations),
            ("val_images", val_images),
            ("val_annotations", val_annotations),
        ):
            if value is not None and not Path(value).exists():
                raise DatasetError(f"{name} {value}: not found; set --data.init_args.{name} to an existing path")
        if voc_root is not None:
            check_voc_layout(voc_root, "val")

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = COCOSemantic(*self.train_pair, self.train_transforms())
        if self.val_dataset is None:
            if self.voc_root is not None:
                self.val_dataset = VOCSegmentation(self.voc_root, "val", self.eval_transforms())
            else:
                images, annotations = self.val_pair
                assert images is not None and annotations is not None
                self.val_dataset = COCOSemantic(images, annotations, self.eval_transforms())


class ShapesSegmentationDataModule(SegmentationDataModule):
    """The synthetic shapes with masks, generated on first use (the same sets the detection demo uses).

    Args:
        root: cache folder; `train/` and `val/` are generated under it.
        num_train, num_val, seed, image_size: as in `mobilevision.tasks.detection.datamodule.ShapesDataModule`.
    """

    def __init__(
        self,
        *,
        root: str = "data_cache/shapes",
        num_train: int = 4000,
        num_val: int = 300,
        seed: int = 0,
        image_size: tuple[int, int] = (256, 256),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.splits = ShapesSplits(root, num_train=num_train, num_val=num_val, seed=seed, image_size=image_size)
        self.class_names = with_background(SHAPE_CLASSES)

    def prepare_data(self) -> None:
        self.splits.ensure_all()

    def _dataset(self, split: str, transform: Any) -> ShapesSegmentation:
        return ShapesSegmentation(self.splits.ensure(split).root, transform)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self._dataset("train", self.train_transforms())
        if self.val_dataset is None:
            self.val_dataset = self._dataset("val", self.eval_transforms())
