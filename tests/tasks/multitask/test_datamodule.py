"""The multi-task DataModules: label spaces known at construction, one batch of training and of validation data from
each, validation ground truth for the box evaluation, resume-exact training sampling."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from mobilevision.data.labels import VOC_CLASSES, with_background
from mobilevision.data.report import DataWarning
from mobilevision.data.sampler import ResumableSampler
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.datamodule import Augment
from mobilevision.tasks.multitask.data import ConcatMultiTask
from mobilevision.tasks.multitask.datamodule import CocoVocMultiTaskDataModule, ShapesMultiTaskDataModule


def _check_batch(batch: tuple[torch.Tensor, list[dict]], size: int, *, at_most: int, evaluation: bool) -> None:
    images, targets = batch
    assert 0 < images.shape[0] <= at_most and images.shape[1:] == (3, size, size) and images.dtype == torch.uint8
    assert len(targets) == images.shape[0]
    for target in targets:
        assert target["mask"].shape == (size, size) and target["mask"].dtype == torch.int64
        assert isinstance(target["has_mask"], bool) and isinstance(target["has_boxes"], bool)
        assert ("orig_mask" in target) == evaluation
        if evaluation:
            assert tuple(target["orig_mask"].shape) == target["orig_size"]


def test_shapes_datamodule_shares_the_generated_sets_and_gives_batches(tmp_path: Path) -> None:
    module = ShapesMultiTaskDataModule(
        root=str(tmp_path / "shapes"),
        num_train=6,
        num_val=3,
        image_size=(48, 64),
        input_size=64,
        batch_size=2,
        num_workers=0,
        augment=Augment(max_zoom=2.0),
    )
    assert module.meta.class_names == module.mask_class_names == with_background(SHAPE_CLASSES)
    assert module.num_classes == module.num_mask_classes == len(SHAPE_CLASSES) + 1 and module.input_size == 64
    module.prepare_data()
    module.setup("fit")
    assert (tmp_path / "shapes" / "train" / "masks").is_dir() and (tmp_path / "shapes" / "val" / "masks").is_dir()
    loader = module.train_dataloader()
    assert isinstance(loader.sampler, ResumableSampler) and loader.drop_last
    assert len(loader) == 3
    first = next(iter(loader))
    _check_batch(first, 64, at_most=2, evaluation=False)
    # A new loader (a resumed run) draws the same samples with the same augmentation, masks included.
    again = next(iter(module.train_dataloader()))
    assert torch.equal(first[0], again[0])
    assert all(
        torch.equal(a["mask"], b["mask"]) and torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first[1], again[1])
    )
    _check_batch(next(iter(module.val_dataloader())), 64, at_most=2, evaluation=True)
    assert isinstance(module.val_dataset.coco, COCO) and len(module.val_dataset.coco.imgs) == 3
    assert module.test_dataset is module.val_dataset


def test_coco_voc_datamodule_trains_on_both_and_validates_on_coco_val(coco2017: tuple, vocdevkit: tuple) -> None:
    root, expected = coco2017
    module = CocoVocMultiTaskDataModule(
        root=str(root), voc_root=str(vocdevkit[0]), input_size=64, batch_size=3, num_workers=0
    )
    assert module.num_classes == 81 and module.meta.class_names[1] == "person"
    assert module.mask_class_names == with_background(VOC_CLASSES) and module.num_mask_classes == 21
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the fixture's planted defects
        module.setup("fit")
        train = module.train_dataset
        assert isinstance(train, ConcatMultiTask)
        assert len(train) == expected["train"].images + vocdevkit[1]["det/2012/trainval"].images
        assert train.datasets[1].meta == module.meta  # VOC's boxes in COCO's labels
        _check_batch(next(iter(module.train_dataloader())), 64, at_most=3, evaluation=False)
        batch = next(iter(module.val_dataloader()))
    _check_batch(batch, 64, at_most=3, evaluation=True)
    # The box evaluation's ground truth: COCO val2017 in original pixels, COCO's category ids.
    coco = module.val_dataset.coco
    assert isinstance(coco, COCO) and len(coco.imgs) == expected["val"].images
    assert sorted(coco.getCatIds()) == module.meta.category_ids[1:]

    coco_only = CocoVocMultiTaskDataModule(root=str(root), input_size=64, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        coco_only.setup("fit")
    assert len(coco_only.train_dataset) == expected["train"].images


def test_coco_voc_datamodule_refuses_wrong_roots_at_construction(coco2017: tuple, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a folder"):
        CocoVocMultiTaskDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: file not found"):
        CocoVocMultiTaskDataModule(root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"VOC2012/ImageSets/Main/trainval.txt: split file not found"):
        CocoVocMultiTaskDataModule(root=str(coco2017[0]), voc_root=str(tmp_path))
