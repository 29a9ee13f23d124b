"""Segmentation transforms: masks aligned under augmentation, workers differ, eval padding and collate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mobilevision.tasks.segmentation.data import (
    IMAGENET_MEAN_255,
    VOCSegmentation,
    collate_segmentation,
    eval_transforms,
    train_transforms,
)
from tests.tasks.segmentation.data.samples import (
    add_voc_sample,
    mask_of,
    voc_root,
    write_list,
)

COLOUR = np.array([250, 10, 200], np.uint8)


def _rectangle_sample() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((120, 160, 3), 90, np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    image[20:60, 30:90] = COLOUR  # off-centre, so a flip of only one of the two would show
    mask[20:60, 30:90] = 7
    return image, mask


@pytest.mark.parametrize("seed", [0, 1])
def test_train_augmentation_keeps_masks_aligned(seed: int) -> None:
    image, mask = _rectangle_sample()
    transform = train_transforms(crop_size=96, scale=(0.5, 2.0), seed=seed)
    kernel = np.ones((3, 3), np.uint8)
    seen_rectangle = seen_whole = seen_padding = 0
    for _ in range(60):
        out = transform(image=image, mask=mask)
        aug_image, aug_mask = out["image"], out["mask"]
        assert aug_image.shape == (96, 96, 3) and aug_mask.shape == (96, 96)
        assert set(np.unique(aug_mask)) <= {0, 7, 255}  # nearest resampling: no blended labels
        distance = np.abs(aug_image.astype(int) - COLOUR).sum(axis=2)
        painted = (distance < 60).astype(np.uint8)
        labelled = (aug_mask == 7).astype(np.uint8)
        # Equal up to the one pixel that bilinear resampling blends at the rectangle's border (the crop edge counts
        # as a border: a rectangle cut there may end on a blended pixel).
        inner = cv2.erode(labelled, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        assert not (inner & (1 - painted)).any()
        assert not (painted & (1 - cv2.dilate(labelled, kernel))).any()
        inside = labelled.sum() > 0 and not (
            labelled[0].any() or labelled[-1].any() or labelled[:, 0].any() or labelled[:, -1].any()
        )
        # Whole rectangle in the crop: centroids agree to half a pixel (nearest sampling moves an edge by <= 0.5 px).
        if inside:
            seen_whole += 1
            # How much of each pixel is rectangle colour (bilinear blends are linear in it); padding is no blend.
            weight = 1.0 - np.clip(distance / np.abs(COLOUR.astype(int) - 90).sum(), 0, 1)
            weight[aug_mask == 255] = 0
            ys, xs = np.mgrid[:96, :96]
            for grid in (ys, xs):
                assert abs((grid * weight).sum() / weight.sum() - grid[labelled > 0].mean()) <= 0.5 + 1e-6
        seen_rectangle += int(labelled.sum() > 100)
        padding = aug_mask == 255
        if padding.any():
            seen_padding += 1
            assert (aug_image[padding] == IMAGENET_MEAN_255).all()
            assert not (aug_image[~padding] == IMAGENET_MEAN_255).all(axis=1).any()
    assert seen_rectangle > 5 and seen_whole > 0 and seen_padding > 0


def test_dataloader_workers_draw_different_augmentations(tmp_path: Path) -> None:
    voc = voc_root(tmp_path)
    for i in range(4):
        add_voc_sample(voc, f"same_{i}", 0, mask=mask_of(0))  # four identical samples
    write_list(voc / "ImageSets" / "Segmentation" / "train.txt", [f"same_{i}" for i in range(4)])
    dataset = VOCSegmentation(voc, "train", train_transforms(crop_size=6, scale=(0.5, 2.0)))
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_segmentation)
    epochs = [[batch[0][0] for batch in loader] for _ in range(2)]
    crops = [crop for epoch in epochs for crop in epoch]
    distinct = {crop.numpy().tobytes() for crop in crops}
    # Without per-worker seeding, worker 0 and 1 replay one stream, and each epoch the same: 2 distinct crops of 8.
    assert len(distinct) >= 6


def test_eval_pad_contract_and_collate() -> None:
    image, mask = _rectangle_sample()
    image, mask = image[:117, :150], mask[:117, :150]
    out = eval_transforms("pad", multiple=16)(image=image, mask=mask)
    assert out["image"].shape == (128, 160, 3)
    assert np.array_equal(out["image"][:117, :150], image) and np.array_equal(out["mask"][:117, :150], mask)
    assert (out["mask"][117:] == 255).all() and (out["mask"][:, 150:] == 255).all()
    assert (out["image"][117:] == IMAGENET_MEAN_255).all()
    assert eval_transforms("pad", size=200, multiple=16)(image=image, mask=mask)["image"].shape == (208, 208, 3)
    resized = eval_transforms("resize", size=(64, 96))(image=image, mask=mask)
    assert resized["image"].shape == (64, 96, 3) and set(np.unique(resized["mask"])) <= {0, 7}
    with pytest.raises(ValueError, match="'crop'"):
        eval_transforms("crop")

    small = (torch.zeros(3, 32, 16, dtype=torch.uint8), torch.ones(32, 16, dtype=torch.int64), (30, 10))
    large = (torch.zeros(3, 48, 32, dtype=torch.uint8), torch.ones(48, 32, dtype=torch.int64), (40, 30))
    images, masks, sizes, orig_sizes = collate_segmentation([small, None, large])
    assert images.shape == (2, 3, 48, 32) and masks.shape == (2, 48, 32)
    assert sizes.tolist() == [[32, 16], [48, 32]]  # each sample's own canvas, before the batch padding
    assert orig_sizes.tolist() == [[30, 10], [40, 30]]
    assert (masks[0, 32:] == 255).all() and (masks[0, :, 16:] == 255).all() and (masks[0, :32, :16] == 1).all()
    assert images[0, :, 40, 20].tolist() == list(IMAGENET_MEAN_255)
    assert collate_segmentation([None, None]) is None
