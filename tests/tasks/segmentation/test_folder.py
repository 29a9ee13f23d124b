"""Segmentation from images + masks folders: index, binary 0/255 and RGB colour masks, classes files, ignore_index,
the bad inputs of issue 24 (a mask value that is not a class, an image with no mask, a mask with no image)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.custom_datamodule import CustomSegmentationDataModule
from mobilevision.tasks.segmentation.data.folder import FolderSegmentation, read_classes_file

pytestmark = pytest.mark.filterwarnings("ignore::mobilevision.data.report.DataWarning")
COLORS = [(0, 0, 0), (200, 10, 10), (10, 200, 10)]


def _write(root, masks, *, grey=False, suffix=".png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        h, w = mask.shape[:2]
        shape = (h, w) if grey else (h, w, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"{i}{suffix}")
    return root / "images", root / "masks"


def _index_masks(n=5, classes=3):
    rng = np.random.default_rng(1)
    return [rng.integers(0, classes, (16, 20), dtype=np.uint8) for _ in range(n)]


def test_binary_masks_read_as_0_1_and_said(tmp_path):
    masks = [(m > 0).astype(np.uint8) * 255 for m in _index_masks()]
    images, masks_dir = _write(tmp_path, masks, grey=True)
    dataset = FolderSegmentation(images, masks_dir)
    assert dataset.mask_mode == "binary" and dataset.class_names == ["background", "foreground"]
    image, mask = dataset[0]
    assert image.shape == (3, 16, 20) and set(mask.unique().tolist()) <= {0, 1}
    assert (mask.numpy() == (masks[0] == 255)).all()
    assert "0/255" in dataset.check().extra["notes"][0]


def test_index_masks_names_and_ignore_index(tmp_path):
    masks = _index_masks()
    masks[1][0, :5] = 9  # the user's void value
    images, masks_dir = _write(tmp_path, masks)
    dataset = FolderSegmentation(images, masks_dir, names=["bg", "a", "b"], ignore_index=9, mask_mode="index")
    _, mask = dataset[1]
    assert (mask[0, :5] == 255).all() and int(mask[1:].max()) <= 2
    inferred = FolderSegmentation(images, masks_dir, ignore_index=9, mask_mode="index")
    assert inferred.class_names == ["class_0", "class_1", "class_2"]


def test_rgb_masks_with_classes_file(tmp_path):
    index = _index_masks()
    rgb = [np.array(COLORS, np.uint8)[m] for m in index]
    rgb[2][0, 0] = (1, 2, 3)  # a colour not in the table
    images, masks_dir = _write(tmp_path, rgb)
    classes = tmp_path / "classes.txt"
    classes.write_text("# name r g b\nbackground 0 0 0\nroad 200 10 10\ncar 10 200 10\n")
    assert read_classes_file(classes) == (["background", "road", "car"], COLORS)
    dataset = FolderSegmentation(images, masks_dir, classes_file=classes)
    assert dataset.mask_mode == "rgb"
    _, mask = dataset[0]
    assert (mask.numpy() == index[0]).all()
    with pytest.warns(DataWarning, match="colour"):
        assert dataset[2] is None
    assert dataset.report.skipped_images == 1


def test_bad_input(tmp_path):
    masks = _index_masks(4)
    masks[0][0, 0] = 7  # not a class
    images, masks_dir = _write(tmp_path, masks)
    (images / "3.jpg").unlink()  # a mask with no image
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(images / "extra.jpg")  # an image with no mask
    with pytest.warns(DataWarning):
        dataset = FolderSegmentation(images, masks_dir, names=["bg", "a", "b"], mask_mode="index")
    report = dataset.check()
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert report.extra["masks_without_image"] == 1 and report.images == 4
    assert any("no mask" in r for r in reasons.values()) and any("7" in r for r in reasons.values())
    bad = tmp_path / "bad.txt"
    bad.write_text("a\na\n")
    with pytest.raises(DatasetError, match="twice"):
        read_classes_file(bad)
    bad.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_classes_file(bad)
    with pytest.raises(DatasetError, match="no image has a mask"):
        FolderSegmentation(images, tmp_path)


def test_datamodule_split_and_loaders(tmp_path, capsys):
    masks = [(m > 0).astype(np.uint8) * 255 for m in _index_masks(10)]
    images, masks_dir = _write(tmp_path, masks)
    dm = CustomSegmentationDataModule(
        images=str(images),
        masks=str(masks_dir),
        split="every_5th",
        split_dir=str(tmp_path / "run"),
        input_size=16,
        batch_size=2,
        num_workers=0,
        eval_batch_size=2,
    )
    assert "binary masks" in capsys.readouterr().out and dm.num_classes == 2
    dm.setup("fit")
    assert len(dm.train_dataset) == 8 and len(dm.val_dataset) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape[1:] == (3, 16, 16)
    assert (tmp_path / "run" / "splits" / "val.txt").read_text() == "1.jpg\n6.jpg\n"
