"""Lightning DataModules for detection: COCO, PASCAL VOC and the synthetic shapes.

Kept apart from `data.py` (datasets and transforms, usable without Lightning) so that `data check` and the
predictor import no Lightning. Each DataModule knows its label space at construction (`meta`, `num_classes`), so the
CLI can link `num_classes` into the model before any image is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from mobilevision.data.jsonio import load_json
from mobilevision.data.labels import VOC_CLASSES
from mobilevision.data.loaders import eval_loader, train_loader
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.data.shapes import ShapesSplits
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import (
    CocoDetection,
    DetectionDataset,
    DetectionMeta,
    VOCDetection,
    check_voc_layout,
    collate_detection,
    eval_transforms,
    train_transforms,
)


@dataclass
class Augment:
    """Switches of the SSD training augmentation (see `mobilevision.tasks.detection.transforms.train_transforms`)."""

    photometric: bool = True
    zoom_out: bool = True
    max_zoom: float = 4.0
    min_iou_crop: bool = True
    hflip: bool = True
    # Probability of tiling a training image with three others first (`mobilevision.tasks.detection.mosaic`);
    # detection datasets only. For small datasets from random weights (the custom config); 0 is SSD's recipe.
    mosaic: float = 0.0


class SampleLoading:
    """How a DataModule turns its datasets into batches: the transforms at the square `input_size` (the SSD training
    augmentation's switches, `augment`), the collate, and the loaders of `mobilevision.data.loaders`.

    The detection DataModules hold one for box samples; the joint model's hold one built with the box-and-mask
    pipelines and collate (composition: neither DataModule derives from the other).

    Args:
        input_size, batch_size, num_workers, augment: see `DetectionDataModule`.
        train_pipeline, eval_pipeline: the transform builders, `train_pipeline(size, **Augment switches)` and
            `eval_pipeline(size)`.
        collate: the batch collate function.
        each_image_once: distributed evaluation gives every image to exactly one process (see
            `mobilevision.data.loaders.eval_loader`).
    """

    def __init__(
        self,
        *,
        input_size: int,
        batch_size: int,
        num_workers: int,
        augment: Augment | bool,
        train_pipeline: Callable[..., Any] = train_transforms,
        eval_pipeline: Callable[[int], Any] = eval_transforms,
        collate: Callable[[list[Any]], Any] = collate_detection,
        each_image_once: bool = False,
    ) -> None:
        self.input_size = input_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = Augment() if augment is True else augment
        self.train_pipeline = train_pipeline
        self.eval_pipeline = eval_pipeline
        self.collate = collate
        self.each_image_once = each_image_once

    def train_transforms(self) -> Any:
        if not self.augment:
            return self.eval_pipeline(self.input_size)
        a = self.augment
        return self.train_pipeline(
            self.input_size,
            photometric=a.photometric,
            zoom_out=a.zoom_out,
            max_zoom=a.max_zoom,
            min_iou_crop=a.min_iou_crop,
            hflip=a.hflip,
        )

    def eval_transforms(self) -> Any:
        return self.eval_pipeline(self.input_size)

    def loader(self, dataset: Dataset, trainer: Any, *, train: bool) -> DataLoader:
        if train and self.augment and self.augment.mosaic:
            if not isinstance(dataset, DetectionDataset):
                raise ValueError(f"augment.mosaic needs a detection dataset, not a {type(dataset).__name__}")
            dataset.use_mosaic(self.augment.mosaic, self.input_size)
        if train:
            return train_loader(
                dataset, trainer, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collate
            )
        return eval_loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            each_image_once=self.each_image_once,
        )


class SplitDataModule(pl.LightningDataModule):
    """A DataModule whose `setup` fills `train_dataset`, `val_dataset` (and optionally `test_dataset`, else the
    validation set is tested) and whose `loading` makes their loaders and transforms."""

    def __init__(self, loading: SampleLoading) -> None:
        super().__init__()
        self.loading = loading
        self.train_dataset: Dataset | None = None
        self.val_dataset: Any = None
        self.test_dataset: Any = None

    @property
    def input_size(self) -> int:
        return self.loading.input_size

    def fill_splits(self, stage: str, make: Callable[[str, bool], Any]) -> None:
        """`setup` of a DataModule with a training and a validation split (the latter also tested): each built
        once, by `make(split, train)`, when the stage needs it."""
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = make("train", True)
        if stage in ("fit", "validate", "test") and self.val_dataset is None:
            self.val_dataset = make("val", False)
            self.test_dataset = self.val_dataset

    def train_transforms(self) -> Any:
        return self.loading.train_transforms()

    def eval_transforms(self) -> Any:
        return self.loading.eval_transforms()

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "setup('fit') first"
        return self.loading.loader(self.train_dataset, self.trainer, train=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_dataset is not None, "setup('fit' or 'validate') first"
        return self.loading.loader(self.val_dataset, self.trainer, train=False)

    def test_dataloader(self) -> DataLoader:
        dataset = self.test_dataset if self.test_dataset is not None else self.val_dataset
        return self.loading.loader(dataset, self.trainer, train=False)


class DetectionDataModule(SplitDataModule):
    """What every detection DataModule shares: transforms, loaders (`SampleLoading`), and `meta`.

    Args:
        input_size: square side images are resized to (the model's input size; linked by the CLI).
        batch_size: images per process (per GPU) and step.
        num_workers: DataLoader worker processes per process.
        augment: training augmentation switches; `False` for none (resize only).
    """

    def __init__(
        self, *, input_size: int = 320, batch_size: int = 32, num_workers: int = 4, augment: Augment | bool = True
    ) -> None:
        super().__init__(
            SampleLoading(input_size=input_size, batch_size=batch_size, num_workers=num_workers, augment=augment)
        )
        self.meta: DetectionMeta

    @property
    def num_classes(self) -> int:
        """Classes including background: what the model predicts."""
        return self.meta.num_classes


class CocoDataModule(DetectionDataModule):
    """COCO-format data: the 2017 layout under `root`, or any json + image folder pairs.

    Args:
        root: folder with `annotations/instances_{train,val}2017.json`, `train2017/`, `val2017/`.
        train_images, train_annotations, val_images, val_annotations: explicit paths (override `root`).
        test_images, test_annotations: a separate test split (default: the validation split).
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        train_images: str | None = None,
        train_annotations: str | None = None,
        val_images: str | None = None,
        val_annotations: str | None = None,
        test_images: str | None = None,
        test_annotations: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is not None and not root.strip():
            raise DatasetError("CocoDataModule: `root` is empty; set --data.init_args.root to the COCO folder")
        if root and not Path(root).is_dir():
            raise DatasetError(
                f"CocoDataModule: root {root} is not a folder; set --data.init_args.root to the COCO "
                "folder (annotations/, train2017/, val2017/)"
            )
        base = Path(root) if root else None
        self.paths = {
            "train": (
                train_images or _under(base, "train2017"),
                train_annotations or _under(base, "annotations/instances_train2017.json"),
            ),
            "val": (
                val_images or _under(base, "val2017"),
                val_annotations or _under(base, "annotations/instances_val2017.json"),
            ),
            "test": (test_images, test_annotations),
        }
        known = self.paths["val"][1] or self.paths["train"][1]
        if known is None:
            raise DatasetError("CocoDataModule needs `root` or annotation files")
        # The label space, read once here so the CLI can size the model before any work (structural errors too).
        self.meta = DetectionMeta.from_categories(read_categories(known))

    def setup(self, stage: str) -> None:
        def build(split: str, train: bool) -> CocoDetection:
            images, annotations = self.paths[split]
            transforms = self.train_transforms() if train else self.eval_transforms()
            return CocoDetection(images, annotations, transforms=transforms, meta=self.meta)

        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = build("train", True)
        if stage in ("fit", "validate") and self.val_dataset is None:
            self.val_dataset = build("val", False)
        if stage == "test" and self.test_dataset is None:
            self.test_dataset = build("test" if self.paths["test"][1] else "val", False)


def _under(base: Path | None, name: str) -> str | None:
    return str(base / name) if base is not None else None


def read_categories(annotations: str | os.PathLike[str]) -> list[dict[str, Any]]:
    data = load_json(annotations)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise DatasetError(f"{annotations}: no `categories` list")
    return categories


_categories = read_categories  # its name before issue 23, for code that still imports it


class VOCDataModule(DetectionDataModule):
    """PASCAL VOC detection, by default the usual 07+12 trainval for training and VOC2007 test for evaluation.

    Args:
        root: the `VOCdevkit` folder.
        train_years, train_split: training sets (default 2007 + 2012 trainval).
        val_years, val_split: evaluation set (default 2007 test).
        keep_difficult: train on `difficult` objects too.
    """

    def __init__(
        self,
        *,
        root: str,
        train_years: tuple[str, ...] = ("2007", "2012"),
        train_split: str = "trainval",
        val_years: tuple[str, ...] = ("2007",),
        val_split: str = "test",
        keep_difficult: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.train_sets = (train_years, train_split)
        self.val_sets = (val_years, val_split)
        self.keep_difficult = keep_difficult
        self.meta = DetectionMeta(["background", *VOC_CLASSES], list(range(len(VOC_CLASSES) + 1)))
        # The evaluation split's layout is checked here, before the model is built (and its weights fetched).
        check_voc_layout(root, val_split, val_years)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            years, split = self.train_sets
            self.train_dataset = VOCDetection(
                self.root, split, years=years, transforms=self.train_transforms(), keep_difficult=self.keep_difficult
            )
        if stage in ("fit", "validate", "test") and self.val_dataset is None:
            years, split = self.val_sets
            self.val_dataset = VOCDetection(self.root, split, years=years, transforms=self.eval_transforms())
            self.test_dataset = self.val_dataset


class ShapesDataModule(DetectionDataModule):
    """The synthetic shapes (`mobilevision.data.shapes`), generated on first use into `root` when absent.

    Training and validation sets come from different seeds, so validation images are never trained on.

    Args:
        root: cache folder; `train/` and `val/` are generated under it.
        num_train, num_val: images per split.
        seed: the training set's seed (validation uses `seed + 1000003`).
        image_size: generated image size (h, w).
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
        self.meta = DetectionMeta(["background", *SHAPE_CLASSES], list(range(len(SHAPE_CLASSES) + 1)))

    def prepare_data(self) -> None:
        self.splits.ensure_all()

    def _dataset(self, split: str, train: bool) -> CocoDetection:
        paths = self.splits.ensure(split)  # no-op when prepare_data already made it
        transforms = self.train_transforms() if train else self.eval_transforms()
        return CocoDetection(paths.images, paths.annotations, transforms=transforms, meta=self.meta)

    def setup(self, stage: str) -> None:
        self.fill_splits(stage, self._dataset)
