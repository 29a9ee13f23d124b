"""The shapes segmentation folder: hand-made and from the generator."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevision.data.report import DataWarning
from mobilevision.tasks.segmentation.data import (
    ShapesSegmentation,
    open_shapes_segmentation,
    train_transforms,
)
from mobilevision.tasks.segmentation.masks import write_palette_png
from tests.tasks.segmentation.data.samples import (
    H,
    W,
    image,
    write_jpg,
)


def test_shapes_segmentation_hand_made_folder(tmp_path: Path) -> None:
    masks = {}
    for i, stem in enumerate(["a", "b"]):
        write_jpg(tmp_path / "images" / f"{stem}.jpg", image(i))
    masks["a"] = np.random.default_rng(0).integers(0, 3, (H, W)).astype(np.uint8)
    write_palette_png(tmp_path / "masks" / "a.png", masks["a"])  # b has no mask; c has no image
    (tmp_path / "annotations.json").write_text(
        json.dumps(
            {
                "images": [
                    {"id": i + 1, "file_name": f"{s}.jpg", "height": H, "width": W} for i, s in enumerate("abc")
                ],
                "annotations": [],
                "categories": [{"id": 2, "name": "square"}, {"id": 1, "name": "circle"}],
            }
        )
    )
    with pytest.warns(DataWarning):
        dataset = ShapesSegmentation(tmp_path)
    assert dataset.class_names == ["background", "circle", "square"]
    assert dataset.ids == ["a"]
    assert {item["file"] for item in dataset.report.skipped} == {"masks/b.png", "images/c.jpg"}
    assert torch.equal(dataset[0][1], torch.from_numpy(masks["a"]).long())


def test_shapes_segmentation_reads_the_generator_output(tmp_path: Path) -> None:
    dataset = open_shapes_segmentation(
        tmp_path / "shapes", train_transforms(crop_size=48), num_images=3, seed=0, image_size=(64, 64)
    )  # generated on first use
    assert len(dataset) == 3 and dataset.class_names[0] == "background" and dataset.num_classes == 6
    assert dataset.check().skipped_images == 0
    image, mask = dataset[0]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
    masks = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "shapes" / "masks").iterdir())]
    assert max(int(m.max()) for m in masks) > 0  # shapes are labelled, not all background
    # Picklable, as DataLoader workers need.
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.ids == dataset.ids


# ----- augmentation
