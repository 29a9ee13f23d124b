"""The detection pieces a task holds: the detector built from its options, the bound criterion, the label space and
the COCO box evaluation. `DetectionTask` is these pieces and the steps; the joint model's task holds the same pieces
beside the segmentation ones (composition, not a subclass)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from mobilevision.checkpoint import default_class_names
from mobilevision.models import build_model
from mobilevision.models.anchors import DefaultBoxes
from mobilevision.tasks.detection.data import DetectionMeta
from mobilevision.tasks.detection.evaluation import format_metrics
from mobilevision.tasks.detection.evaluator import METRIC_KEYS, CocoEvaluator
from mobilevision.tasks.detection.loss import MultiBoxLoss


def build_detector(
    model: str,
    *,
    weights: str | None,
    zero_init_residual: bool,
    num_classes: int,
    width_mult: float,
    classification: str,
    backbone: str | None,
    taps: Sequence[str] | None,
    extra_depths: Sequence[int],
    default_boxes: DefaultBoxes | None,
    score_threshold: float,
    nms_threshold: float,
    detections_per_image: int,
    **builder_kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """The network of `model` (a detector, or a model holding one) and the plain keyword arguments that rebuild it
    (what checkpoints store). Those record what the builder resolved (the backbone's default taps as layer names,
    the default boxes), so a checkpoint rebuilds this network even if a backbone's defaults change later."""
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "width_mult": width_mult,
        "classification": classification,
        **({"backbone": backbone} if backbone is not None else {}),
        "taps": list(taps) if taps is not None else None,
        "extra_depths": list(extra_depths),
        "default_boxes": dataclasses.asdict(default_boxes) if default_boxes is not None else None,
        "score_threshold": score_threshold,
        "nms_threshold": nms_threshold,
        "detections_per_image": detections_per_image,
        **builder_kwargs,
    }
    network = build_model(model, weights=weights, zero_init_residual=zero_init_residual, **kwargs)
    kwargs["taps"] = list(network.taps)
    kwargs["default_boxes"] = dataclasses.asdict(network.default_boxes)
    return network, kwargs


def bind_criterion(criterion: MultiBoxLoss | None, network: Any) -> MultiBoxLoss:
    """`criterion` (SSD's multibox loss when None) fitted to `network`'s scoring and default boxes."""
    return (criterion if criterion is not None else MultiBoxLoss()).bind(
        classification=network.classification, boxes_per_location=network.default_boxes.num_anchors
    )


class DetectionLabels:
    """The label space of a task's detector: the DataModule's (checked at setup), the checkpoint's, or placeholder
    names with ids 0..C-1 for a model trained on no named dataset."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.meta: DetectionMeta | None = None

    def setup(self, datamodule: Any) -> None:
        meta = getattr(datamodule, "meta", None)
        if meta is not None:
            if meta.num_classes != self.num_classes:
                raise ValueError(
                    f"the data has {meta.num_object_classes} classes + background but the model predicts "
                    f"{self.num_classes}; set model.num_classes={meta.num_classes}"
                )
            self.meta = meta

    @property
    def current(self) -> DetectionMeta:
        if self.meta is not None:
            return self.meta
        return DetectionMeta(default_class_names(self.num_classes), list(range(self.num_classes)))

    def load(self, saved: dict[str, Any] | None) -> None:
        """The names and ids stored in a checkpoint's metadata, unless the DataModule gave them."""
        if saved and self.meta is None:
            self.meta = DetectionMeta(list(saved["class_names"]), list(saved["category_ids"]))


class BoxEvaluation:
    """COCO mAP of a task's detections, one `CocoEvaluator` per split (validation inside fit never mixes with a
    test run): batches added by `update`, scored, logged as `<split>/<metric>` and printed at the epoch's end, when
    the split's results are reset (also after Lightning's sanity check) for the next evaluation."""

    def __init__(self) -> None:
        self.evaluators = {"val": CocoEvaluator(), "test": CocoEvaluator()}

    def reset(self, split: str) -> None:
        self.evaluators[split].reset()

    def update(
        self, split: str, detections: list[dict[str, Tensor]], targets: list[dict[str, Any]], input_size: Any, meta: Any
    ) -> None:
        self.evaluators[split].update(detections, targets, input_size, meta)

    def log(self, task: pl.LightningModule, split: str) -> None:
        """Score the split's results on every process's images against the DataModule's `<split>_dataset.coco`
        (on rank 0, broadcast to the others) and log them; nothing during Lightning's sanity check."""
        evaluator = self.evaluators[split]
        trainer = task.trainer
        if trainer.sanity_checking:
            evaluator.reset()
            return
        results = evaluator.synchronize()
        dataset = getattr(getattr(trainer, "datamodule", None), f"{split}_dataset", None)
        coco_gt = getattr(dataset, "coco", None)
        metrics = torch.zeros(len(METRIC_KEYS), dtype=torch.float64)
        if trainer.is_global_zero and coco_gt is not None:
            output = evaluator.compute(coco_gt, results)
            metrics = torch.tensor([output[k] for k in METRIC_KEYS], dtype=torch.float64)
            rank_zero_info(
                f"\n{split} COCO metrics, epoch {task.current_epoch}, {output['images']} images:\n"
                + format_metrics(output)
            )
        metrics = trainer.strategy.broadcast(metrics, src=0)
        for key, value in zip(METRIC_KEYS, metrics.tolist()):
            task.log(f"{split}/{key}", value, prog_bar=key in ("map", "map_50"), rank_zero_only=False)
        evaluator.reset()

    def plot(self, folder: Path, split: str) -> list[Path]:
        """Per-class precision-recall curves (IoU 0.5 and the mean over 0.5:0.95) of the last `split` evaluation."""
        last = self.evaluators[split].last if split in self.evaluators else None
        if last is None:
            return []
        from mobilevision.plots import plot_pr_curves
        from mobilevision.tasks.detection.evaluation import precision_recall

        curves = precision_recall(*last)
        written = []
        for name, iou_label, precision, ap in (
            ("pr_curves_iou50", "IoU 0.5", curves["precision_50"], curves["ap_50"]),
            ("pr_curves", "mean over IoU 0.5:0.95", curves["precision"], curves["ap"]),
        ):
            path = plot_pr_curves(
                folder / f"{split}_{name}.png", precision, curves["recall"], curves["names"], iou_label=iou_label, ap=ap
            )
            if path is not None:
                written.append(path)
        return written


def detection_checkpoint_meta(
    task_name: str, model_name: str, model_kwargs: dict[str, Any], labels: DetectionLabels, input_size: int
) -> dict[str, Any]:
    """The `mobilevision` entry of a detector's checkpoint (see `mobilevision.checkpoint.ModelMeta`)."""
    meta = labels.current
    return {
        "task": task_name,
        "model_name": model_name,
        "model_kwargs": model_kwargs,
        "class_names": meta.class_names,
        "category_ids": meta.category_ids,
        "input_size": [input_size, input_size],
    }
