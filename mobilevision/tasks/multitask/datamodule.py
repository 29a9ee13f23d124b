"""Lightning DataModules for the multi-task model: the synthetic shapes, and COCO (+ VOC) for both heads.

Each knows both label spaces at construction (`meta` / `num_classes` for the detector, `mask_class_names` /
`num_mask_classes` for the segmentation head), so the CLI can size the model before any image is read. Training
and evaluation images are resized to the square `input_size`, where both answers are computed; evaluation targets
carry `orig_mask` (segmentation is scored at the original resolution) and `val_dataset.coco` is the box ground truth
in original pixels (COCO mAP, as the detection task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilevision.data.labels import VOC_CLASSES, check_label_space, with_background
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.data.shapes import ShapesSplits
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import DetectionMeta, check_voc_layout
from mobilevision.tasks.detection.datamodule import Augment, SampleLoading, SplitDataModule, read_categories
from mobilevision.tasks.multitask.data import (
    CocoMultiTask,
    ConcatMultiTask,
    ShapesMultiTask,
    VOCMultiTask,
    collate_multitask,
    eval_transforms,
    train_transforms,
)


class MultiTaskDataModule(SplitDataModule):
    """What every multi-task DataModule shares: box-and-mask samples batched by a `SampleLoading` (input size,
    batch size, workers, the SSD augmentation's switches with the mask moving with the boxes), and both label
    spaces.

    Args:
        input_size, batch_size, num_workers: as `DetectionDataModule` (batch_size for training and evaluation).
        augment: the SSD training augmentation's switches (`detection.datamodule.Augment`); `False` for none
            (resize only).
    """

    mask_class_names: list[str]

    def __init__(
        self, *, input_size: int = 320, batch_size: int = 32, num_workers: int = 4, augment: Augment | bool = True
    ) -> None:
        super().__init__(
            SampleLoading(
                input_size=input_size,
                batch_size=batch_size,
                num_workers=num_workers,
                augment=augment,
                train_pipeline=train_transforms,
                eval_pipeline=eval_transforms,
                collate=collate_multitask,
                # Every image exactly once over the processes, so the summed segmentation confusion matrix counts
                # each once (the box results are keyed by image id either way).
                each_image_once=True,
            )
        )
        self.meta: DetectionMeta

    @property
    def num_classes(self) -> int:
        """The detector's classes including background."""
        return self.meta.num_classes

    @property
    def num_mask_classes(self) -> int:
        """The segmentation head's classes including background (checked: background first, no name twice)."""
        check_label_space(self.mask_class_names, source=f"{type(self).__name__} mask classes")
        return len(self.mask_class_names)


class ShapesMultiTaskDataModule(MultiTaskDataModule):
    """The synthetic shapes with boxes and masks, generated on first use: the very sets the detection and
    segmentation demos use (`ShapesSplits`), one label space for both heads.

    Args:
        root: cache folder; `train/` and `val/` are generated under it.
        num_train, num_val, seed, image_size: as `mobilevision.tasks.detection.datamodule.ShapesDataModule`.
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
        self.mask_class_names = with_background(SHAPE_CLASSES)

    def prepare_data(self) -> None:
        self.splits.ensure_all()

    def _dataset(self, split: str, train: bool) -> ShapesMultiTask:
        paths = self.splits.ensure(split)  # no-op when prepare_data already made it
        transforms = self.train_transforms() if train else self.eval_transforms()
        return ShapesMultiTask(paths.root, transforms=transforms, with_orig_mask=not train, meta=self.meta)

    def setup(self, stage: str) -> None:
        self.fill_splits(stage, self._dataset)


class CocoVocMultiTaskDataModule(MultiTaskDataModule):
    """COCO 2017 for both heads (boxes over COCO's 80 classes, masks of VOC's 20 rendered from the same
    annotations), optionally with PASCAL VOC added for training (its boxes mapped into COCO's labels, its masks
    where it has them).

    Validation (and test) is COCO val2017: every image for the boxes (COCO mAP against `val_dataset.coco`), and for
    the segmentation the val2017 images holding an object of a VOC class (the others have `has_mask` False), scored
    on VOC's 21 classes against `orig_mask`: the set `COCOSemantic` makes of val2017, so the number compares with
    the segmentation task's COCO pre-training. VOC 2012 val, the usual segmentation benchmark, is kept out of
    training (`withhold_voc_masks`) so a model can be scored on it afterwards.

    Args:
        root: COCO folder with `annotations/instances_{train,val}2017.json`, `train2017/`, `val2017/`.
        voc_root: a `VOCdevkit` (or one year's folder) whose `voc_split` joins the training set; None: COCO only.
        voc_years, voc_split: which VOC images (default VOC 2012 `trainval`: every segmentation image, with XML).
        sbd_root: SBD's `benchmark_RELEASE`, for the masks of the VOC images without one (VOC's trainaug masks).
        withhold_voc_masks: the `ImageSets/Segmentation` list whose masks are never trained on (None: none).
    """

    def __init__(
        self,
        *,
        root: str,
        voc_root: str | None = None,
        voc_years: tuple[str, ...] = ("2012",),
        voc_split: str = "trainval",
        sbd_root: str | None = None,
        withhold_voc_masks: str | None = "val",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not root or not str(root).strip() or not Path(root).is_dir():
            raise DatasetError(
                f"CocoVocMultiTaskDataModule: root {root!r} is not a folder; set --data.init_args.root "
                "to the COCO folder (annotations/, train2017/, val2017/)"
            )
        base = Path(root)
        self.paths = {
            split: (base / f"{split}2017", base / "annotations" / f"instances_{split}2017.json")
            for split in ("train", "val")
        }
        # The label space, read once here (from val: the smaller file) so the CLI can size the model first.
        self.meta = DetectionMeta.from_categories(read_categories(self.paths["val"][1]))
        self.mask_class_names = with_background(VOC_CLASSES)
        self.voc = (voc_root, tuple(voc_years), voc_split, sbd_root, withhold_voc_masks)
        if voc_root is not None:
            check_voc_layout(voc_root, voc_split, voc_years)  # a wrong VOC root is one message, before any work

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            images, annotations = self.paths["train"]
            coco = CocoMultiTask(images, annotations, transforms=self.train_transforms(), meta=self.meta)
            voc_root, years, split, sbd_root, withhold = self.voc
            if voc_root is None:
                self.train_dataset = coco
            else:
                voc = VOCMultiTask(
                    voc_root,
                    split,
                    years=years,
                    meta=self.meta,
                    sbd_root=sbd_root,
                    withhold_masks=withhold,
                    transforms=self.train_transforms(),
                )
                self.train_dataset = ConcatMultiTask([coco, voc])
        if stage in ("fit", "validate", "test") and self.val_dataset is None:
            images, annotations = self.paths["val"]
            self.val_dataset = CocoMultiTask(
                images, annotations, transforms=self.eval_transforms(), with_orig_mask=True, meta=self.meta
            )
            self.test_dataset = self.val_dataset
