"""`CocoEvaluator`: update keeps one entry per image in the dataset's ids, skips images without boxes, and compute
scores every evaluated image with pycocotools."""

from __future__ import annotations

import torch

from mobilevision.tasks.detection.data import DetectionMeta, coco_from_dict
from mobilevision.tasks.detection.evaluator import METRIC_KEYS, CocoEvaluator


def _ground_truth():  # noqa: ANN202
    return coco_from_dict(
        {
            "images": [{"id": 7, "width": 100, "height": 50}, {"id": 9, "width": 100, "height": 50}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
            ],
            "categories": [{"id": 3, "name": "kangaroo"}],
        }
    )


def test_a_perfect_detection_scores_one_and_images_count_once() -> None:
    meta = DetectionMeta(["background", "kangaroo"], [0, 3])
    evaluator = CocoEvaluator()
    # Network input 50x50 for images of 100x50: x is scaled by 2 back to the image.
    detection = {
        "boxes": torch.tensor([[5.0, 10.0, 15.0, 30.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
    }
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    targets = [{"image_id": 7, "orig_size": (50, 100)}, {"image_id": 9, "orig_size": (50, 100)}]
    evaluator.update([detection, empty], targets, (50, 50), meta)
    evaluator.update([detection], [targets[0]], (50, 50), meta)  # a repeat (DistributedSampler padding)
    evaluator.update([detection], [{"image_id": 11, "orig_size": (50, 100), "has_boxes": False}], (50, 50), meta)
    results = evaluator.synchronize()
    assert sorted(results) == [7, 9] and results[7][0]["category_id"] == 3
    assert results[7][0]["bbox"] == [10.0, 10.0, 20.0, 20.0]
    output = evaluator.compute(_ground_truth(), results)
    assert output["images"] == 2 and abs(output["map"] - 1.0) < 1e-6
    assert set(METRIC_KEYS) <= set(output) and evaluator.last is not None
    evaluator.reset()
    assert evaluator.synchronize() == {}
