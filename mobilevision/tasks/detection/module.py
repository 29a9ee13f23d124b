"""`DetectionTask`: the LightningModule that trains and evaluates a `Detector`.

It owns the multibox loss, the COCO evaluation (pycocotools over every process's detections), the optimiser and the
schedule (injected), and the label metadata that goes into checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from mobilevision.checkpoint import default_class_names
from mobilevision.models import build_model
from mobilevision.models.anchors import DefaultBoxes
from mobilevision.models.detector import Detector
from mobilevision.models.heads.ssd import EXTRA_DEPTHS
from mobilevision.tasks.base import BaseTask, LRSchedule, OptimizerFactory
from mobilevision.tasks.detection.data import DetectionMeta
from mobilevision.tasks.detection.evaluation import format_metrics
from mobilevision.tasks.detection.evaluator import METRIC_KEYS, CocoEvaluator
from mobilevision.tasks.detection.loss import MultiBoxLoss


class DetectionTask(BaseTask):
    """Train an SSD-style detector.

    Args:
        model: a detector name of `mobilevision.MODELS` ("ssdlite_mobilenet_v2" or "ssd_mobilenet_v2").
        num_classes: classes including background; linked from the DataModule by the CLI.
        width_mult: backbone width multiplier.
        backbone_weights: ImageNet weights for the backbone: a torchvision name or a local file.
        input_size: training and evaluation input side (square), linked from the DataModule by the CLI.
        default_boxes: the default-box recipe (TF reference by default); `num_maps` = taps + extra layers.
        backbone: a name of `mobilevision.models.backbones.BACKBONES`; None is the model builder's own.
        taps: backbone maps the head reads, fine to coarse, by role ("stride16_expansion", "last") or layer name;
            None is the backbone's declared default (the paper's two for SSDLite). Stored as layer names.
        extra_depths: output depths of the extra layers grown from the last tap (the paper's four by default).
        zero_init_residual: residual blocks start as identities when training from random weights (see
            `MobileNetV2`); loaded backbone weights or `init_from` replace it.
        classification: "softmax" (cross-entropy) or "sigmoid" (the TF reference's variant).
        neg_pos_ratio: hard negative mining ratio.
        iou_threshold, assignment, atss_topk, focal_gamma, focal_alpha, box_loss, box_weight: the loss options (see
            `MultiBoxLoss`); the defaults are SSD's (IoU 0.5, hard negative mining, smooth L1).
        score_threshold, nms_threshold, detections_per_image: evaluation post-processing (COCO protocol: low
            threshold, 100 detections).
        builder_kwargs: more keyword arguments of the model builder, for builders with more options (the
            multi-task model's segmentation head); stored in checkpoints with the others.
        optimizer, schedule, ema_decay, max_nonfinite_steps, channels_last, init_from: see `BaseTask`.
    """

    task_name = "detection"  # the task-table entry its checkpoints name

    def __init__(
        self,
        *,
        model: str = "ssdlite_mobilenet_v2",
        num_classes: int = 91,
        width_mult: float = 1.0,
        backbone_weights: str | None = None,
        input_size: int = 320,
        default_boxes: DefaultBoxes | None = None,
        backbone: str | None = None,
        taps: Sequence[str] | None = None,
        extra_depths: Sequence[int] = EXTRA_DEPTHS,
        zero_init_residual: bool = True,
        classification: str = "softmax",
        neg_pos_ratio: float = 3.0,
        iou_threshold: float = 0.5,
        assignment: str = "iou",
        atss_topk: int = 9,
        focal_gamma: float | None = None,
        focal_alpha: float = 0.25,
        box_loss: str = "smooth_l1",
        box_weight: float = 1.0,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.6,
        detections_per_image: int = 100,
        builder_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerFactory | None = None,
        schedule: LRSchedule | None = None,
        ema_decay: float | None = None,
        max_nonfinite_steps: int = 10,
        channels_last: bool = True,
        init_from: str | None = None,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            schedule=schedule,
            ema_decay=ema_decay,
            max_nonfinite_steps=max_nonfinite_steps,
            channels_last=channels_last,
            init_from=init_from,
        )
        self.model_name = model
        self.input_size = input_size
        # Plain values only: they travel in the checkpoint and rebuild the model without this config.
        self.model_kwargs: dict[str, Any] = {
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
            **(builder_kwargs or {}),
        }
        self.model: Detector = build_model(
            model, weights=backbone_weights, zero_init_residual=zero_init_residual, **self.model_kwargs
        )
        # What the builder resolved (the backbone's default taps as layer names, the default boxes), so checkpoints
        # rebuild this network even if a backbone's defaults change later.
        self.model_kwargs["taps"] = list(self.model.taps)
        self.model_kwargs["default_boxes"] = dataclasses.asdict(self.model.default_boxes)
        self.criterion = MultiBoxLoss(
            neg_pos_ratio=neg_pos_ratio,
            iou_threshold=iou_threshold,
            assignment=assignment,
            atss_topk=atss_topk,
            boxes_per_location=self.model.default_boxes.num_anchors,
            classification=classification,
            focal_gamma=focal_gamma,
            focal_alpha=focal_alpha,
            box_loss=box_loss,
            box_weight=box_weight,
        )
        self.meta: DetectionMeta | None = None
        # One evaluator per split, so validation inside fit never mixes with a test run.
        self.box_evaluators = {"val": CocoEvaluator(), "test": CocoEvaluator()}
        self._finish_init()

    # -------------------------------------------------------------------------------------------------- metadata
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        meta = getattr(datamodule, "meta", None)
        if meta is not None:
            if meta.num_classes != self.model.num_classes:
                raise ValueError(
                    f"the data has {meta.num_object_classes} classes + background but the model predicts "
                    f"{self.model.num_classes}; set model.num_classes={meta.num_classes}"
                )
            self.meta = meta

    @property
    def label_meta(self) -> DetectionMeta:
        """The data's label space, or placeholder names with ids 0..C-1 for a model trained on no named dataset."""
        if self.meta is not None:
            return self.meta
        n = self.model.num_classes
        return DetectionMeta(default_class_names(n), list(range(n)))

    def checkpoint_meta(self) -> dict[str, Any]:
        meta = self.label_meta
        return {
            "task": self.task_name,
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "class_names": meta.class_names,
            "category_ids": meta.category_ids,
            "input_size": [self.input_size, self.input_size],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("mobilevision")
        if saved and self.meta is None:
            self.meta = DetectionMeta(list(saved["class_names"]), list(saved["category_ids"]))

    # ----------------------------------------------------------------------------------------------------- steps
    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.eval_model(images)

    def training_step(self, batch: tuple[Tensor, list[dict[str, Any]]], batch_idx: int) -> Tensor | None:
        images, targets = batch
        if images.shape[0] < 2:
            return self.empty_step_loss()
        outputs, anchors, level_sizes = self.model.forward_levels(images)
        losses = self.criterion(outputs, anchors, targets, level_sizes)
        batch_size = images.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/loss_box", losses["loss_box"], batch_size=batch_size)
        self.log("train/loss_cls", losses["loss_cls"], batch_size=batch_size)
        return self.guard_loss(losses["loss"], [str(t.get("file", t.get("image_id"))) for t in targets])

    def _eval_step(self, batch: tuple[Tensor, list[dict[str, Any]]], prefix: str) -> None:
        images, targets = batch
        if images.shape[0] == 0:
            return
        model: Detector = self.eval_model  # type: ignore[assignment]
        outputs, anchors, level_sizes = model.forward_levels(images)
        loss = self.criterion(outputs, anchors, targets, level_sizes)["loss"]
        self.log(f"{prefix}/loss", loss, batch_size=images.shape[0], sync_dist=True)
        input_size = (images.shape[-2], images.shape[-1])
        detections = model.postprocess(outputs, anchors, input_size)
        self.box_evaluators[prefix].update(detections, targets, input_size, self.label_meta)

    def validation_step(self, batch: tuple[Tensor, list[dict[str, Any]]], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, list[dict[str, Any]]], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.eval_model(images)

    def on_validation_epoch_start(self) -> None:
        self.box_evaluators["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.box_evaluators["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val", "val_dataset")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test", "test_dataset")

    def _evaluate(self, prefix: str, dataset_attr: str) -> None:
        evaluator = self.box_evaluators[prefix]
        if self.trainer.sanity_checking:
            evaluator.reset()
            return
        results = evaluator.synchronize()
        dataset = getattr(getattr(self.trainer, "datamodule", None), dataset_attr, None)
        coco_gt = getattr(dataset, "coco", None)
        metrics = torch.zeros(len(METRIC_KEYS), dtype=torch.float64)
        if self.trainer.is_global_zero and coco_gt is not None:
            output = evaluator.compute(coco_gt, results)
            metrics = torch.tensor([output[k] for k in METRIC_KEYS], dtype=torch.float64)
            rank_zero_info(
                f"\n{prefix} COCO metrics, epoch {self.current_epoch}, {output['images']} images:\n"
                + format_metrics(output)
            )
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        for key, value in zip(METRIC_KEYS, metrics.tolist()):
            self.log(f"{prefix}/{key}", value, prog_bar=key in ("map", "map_50"), rank_zero_only=False)
        evaluator.reset()

    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """Per-class precision-recall curves (IoU 0.5 and the mean over 0.5:0.95) of the last `split` evaluation."""
        last = self.box_evaluators[split].last if split in self.box_evaluators else None
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
