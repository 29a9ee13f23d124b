"""Mosaic: four images tiled into one, boxes following their pixels; wired into detection datasets and loaders."""

from __future__ import annotations

import numpy as np
import pytest

from mobilevision.tasks.detection.custom_datamodule import CustomDetectionDataModule
from mobilevision.tasks.detection.data import DetectionDataset
from mobilevision.tasks.detection.datamodule import Augment
from mobilevision.tasks.detection.mosaic import mosaic
from tests.fixtures.own_data import make_truth, write_voc

pytestmark = pytest.mark.filterwarnings("ignore::mobilevision.data.report.DataWarning")


def _sample(colour: int, height: int, width: int, box: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # A grey image with one box painted `colour`: after the mosaic the box must still cover that colour.
    image = np.full((height, width, 3), 10, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    image[y1:y2, x1:x2] = colour
    return image, np.array([box], np.float32), np.array([colour], np.int64)


def test_boxes_follow_their_pixels_and_slivers_are_dropped():
    samples = [
        _sample(50, 40, 80, [10, 10, 30, 30]),
        _sample(100, 80, 40, [5, 40, 35, 70]),
        _sample(150, 60, 60, [20, 20, 50, 50]),
        _sample(200, 30, 90, [60, 5, 85, 25]),
    ]
    for seed in range(20):
        image, boxes, labels = mosaic(samples, 64, np.random.default_rng(seed))
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and labels.dtype == np.int64 and len(boxes) == len(labels)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        for box, label in zip(boxes.round().astype(int), labels):
            inside = image[box[1] + 1 : box[3] - 1, box[0] + 1 : box[2] - 1, 0].astype(int)
            assert inside.size and abs(np.median(inside) - label) <= 2, (seed, box, label)
        # A box is dropped only when less than a quarter of it stays on the canvas: the first image's box is
        # its image's centre-left and always visible, so a mosaic always keeps at least one box.
        assert len(boxes) >= 1


def test_mosaic_needs_four():
    with pytest.raises(ValueError, match="4 samples"):
        mosaic([_sample(50, 10, 10, [1, 1, 5, 5])] * 3, 32, np.random.default_rng(0))


def test_loader_tiles_seeded_samples_and_falls_back_on_a_bad_partner(tmp_path):
    root = write_voc(tmp_path / "voc", make_truth(10))
    (root / "images" / "img003.png").write_bytes(b"not a png")  # a bad partner: its sample stays single
    dm = CustomDetectionDataModule(
        root=str(root), split="every_5th", input_size=48, batch_size=8, num_workers=0, augment=Augment(mosaic=1.0)
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    dataset = dm.train_dataset
    assert dataset.mosaic == 1.0 and dataset.mosaic_size == 48
    images, targets = next(iter(loader))
    assert images.shape[1:] == (3, 48, 48)
    # The same key gives the same mosaic (exact resume); another seed another one.
    index = next(i for i in range(len(dataset)) if dataset._records[i].file_name != "img003.png")
    first, again, other = dataset[(index, 7)], dataset[(index, 7)], dataset[(index, 8)]
    assert first is not None and again is not None and other is not None
    assert np.array_equal(first[0].numpy(), again[0].numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())
    # Over many draws, mosaics hold more boxes than any single image of this data (at most 3).
    counts = [len(s[1]["boxes"]) for s in (dataset[(index, k)] for k in range(30)) if s is not None]
    assert max(counts) > 3
    assert "img003.png" in {entry["file"] for entry in dataset.report.skipped}


def test_mosaic_probability_is_checked():
    dataset = DetectionDataset.__new__(DetectionDataset)  # only the setter is exercised
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        dataset.use_mosaic(1.5, 64)
