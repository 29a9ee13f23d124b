"""`CocoEvaluator`: COCO mAP over one evaluation's images, with the update / synchronize / compute interface any
task holds (the detection task, and the joint model's task for its boxes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pycocotools.coco import COCO
from torch import Tensor

from mobilevision.tasks.detection.evaluation import STAT_NAMES, evaluate_coco, rescale_boxes, to_coco_results

# The 12 COCO numbers every evaluation logs, under `<split>/<name>`.
METRIC_KEYS = STAT_NAMES


class CocoEvaluator:
    """Detections of one evaluation in COCO results form, keyed by image, scored by pycocotools.

    `update` takes a batch's detections in network-input pixels and their targets; `synchronize` merges every
    process's results (DistributedSampler repeats images to even out ranks: each image counts once); `compute`
    scores them against a ground truth. The last scored evaluation (ground truth, results, image ids) stays in
    `last` for the precision-recall plots.
    """

    def __init__(self) -> None:
        self.results: dict[int, list[dict[str, Any]]] = {}
        self.last: tuple[COCO, list[dict[str, Any]], list[int]] | None = None

    def reset(self) -> None:
        self.results = {}

    def update(
        self,
        detections: Sequence[dict[str, Tensor]],
        targets: Sequence[dict[str, Any]],
        input_size: tuple[int, int],
        meta: Any,
    ) -> None:
        """Add a batch. `detections[i]` (boxes in input pixels) goes with `targets[i]` (`image_id`, `orig_size`);
        a target with `has_boxes` False (a joint-model image with only a mask) is left out. `meta` maps labels to
        the dataset's category ids (`DetectionMeta`)."""
        for detection, target in zip(detections, targets):
            if not target.get("has_boxes", True):
                continue
            detection = {**detection, "boxes": rescale_boxes(detection["boxes"], input_size, target["orig_size"])}
            image_id = int(target["image_id"])
            self.results[image_id] = to_coco_results([detection], [image_id], meta)

    def synchronize(self) -> dict[int, list[dict[str, Any]]]:
        """Every process's results, merged (this process's alone outside distributed training)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.results
        gathered: list[dict[int, list[dict[str, Any]]] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, self.results)
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in gathered:
            merged.update(part or {})
        return merged

    def compute(self, coco_gt: COCO, results: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
        """pycocotools' numbers (`METRIC_KEYS` among them) of `results` (from `synchronize`) on every evaluated
        image, those with no detection too (COCO's protocol)."""
        evaluated_ids = sorted(results)
        flat = [r for image_id in evaluated_ids for r in results[image_id]]
        output = evaluate_coco(coco_gt, flat, image_ids=evaluated_ids)
        self.last = (coco_gt, flat, evaluated_ids)
        return {**output, "images": len(evaluated_ids)}
