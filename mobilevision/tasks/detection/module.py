"""`DetectionTask`: the LightningModule that trains and evaluates a `Detector`.

It holds the detection pieces (`tasks.detection.parts`: the detector and its options, the criterion injected by
`class_path` like the optimizer, the label metadata that goes into checkpoints, the COCO evaluation) and the
training machinery of `BaseTask` (optimiser, schedule, EMA, non-finite guard).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from mobilevision.models.anchors import DefaultBoxes
from mobilevision.models.detector import Detector
from mobilevision.models.heads.ssd import EXTRA_DEPTHS
from mobilevision.tasks.base import BaseTask
from mobilevision.tasks.detection.data import DetectionMeta
from mobilevision.tasks.detection.loss import MultiBoxLoss
from mobilevision.tasks.detection.parts import (
    BoxEvaluation,
    DetectionLabels,
    bind_criterion,
    build_detector,
    detection_checkpoint_meta,
)


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
        classification: "softmax" or "sigmoid": how the detector scores classes; the criterion follows it.
        criterion: the loss (`class_path`/`init_args` in a config, like the optimizer): `MultiBoxLoss` with its
            options (matching, mining or focal loss, box loss); None is SSD's (IoU 0.5, hard negative mining,
            smooth L1).
        score_threshold, nms_threshold, detections_per_image: evaluation post-processing (COCO protocol: low
            threshold, 100 detections).
        tf_exact: the TF reference's arithmetic (`mobilevision convert tf` checkpoints; see `Detector`), with
            `backbone_kwargs` (the converted backbone's `min_channels`, `last_channels`), `extra_depths` and
            `default_boxes` as the converted checkpoint has them, to fine-tune it with `init_from` (on another
            class list too: the class predictors then start fresh). docs/pretrained.md has the config.
        **training: `BaseTask`'s options (optimizer, schedule, ema_decay, max_nonfinite_steps, channels_last,
            init_from).
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
        criterion: MultiBoxLoss | None = None,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.6,
        detections_per_image: int = 100,
        tf_exact: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        self.model_name = model
        self.input_size = input_size
        # Plain values only: they travel in the checkpoint and rebuild the model without this config.
        self.model: Detector
        self.model, self.model_kwargs = build_detector(
            model,
            weights=backbone_weights,
            zero_init_residual=zero_init_residual,
            num_classes=num_classes,
            width_mult=width_mult,
            classification=classification,
            backbone=backbone,
            taps=taps,
            extra_depths=extra_depths,
            default_boxes=default_boxes,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            detections_per_image=detections_per_image,
            **({"tf_exact": True} if tf_exact else {}),
            **({"backbone_kwargs": dict(backbone_kwargs)} if backbone_kwargs else {}),
        )
        self.criterion = bind_criterion(criterion, self.model)
        self.labels = DetectionLabels(self.model.num_classes)
        self.boxes = BoxEvaluation()
        self._finish_init()

    def class_specific_keys(self) -> list[str]:
        # The class predictors' last convolutions: [boxes per location * classes] outputs.
        return [k for k in self.model.state_dict() if re.search(r"(^|\.)head\.cls_heads\.\d+\.1\.(weight|bias)$", k)]

    # -------------------------------------------------------------------------------------------------- metadata
    def setup(self, stage: str) -> None:
        self.labels.setup(getattr(self.trainer, "datamodule", None))

    @property
    def label_meta(self) -> DetectionMeta:
        """The data's label space, or placeholder names with ids 0..C-1 for a model trained on no named dataset."""
        return self.labels.current

    def checkpoint_meta(self) -> dict[str, Any]:
        return detection_checkpoint_meta(
            self.task_name, self.model_name, self.model_kwargs, self.labels, self.input_size
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.labels.load(checkpoint.get("mobilevision"))

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

    def eval_step(self, batch: tuple[Tensor, list[dict[str, Any]]], prefix: str) -> None:
        images, targets = batch
        if images.shape[0] == 0:
            return
        model = self.eval_model
        outputs, anchors, level_sizes = model.forward_levels(images)
        loss = self.criterion(outputs, anchors, targets, level_sizes)["loss"]
        self.log(f"{prefix}/loss", loss, batch_size=images.shape[0], sync_dist=True)
        input_size = (images.shape[-2], images.shape[-1])
        detections = model.postprocess(outputs, anchors, input_size)
        self.boxes.update(prefix, detections, targets, input_size, self.label_meta)

    def on_validation_epoch_end(self) -> None:
        self.boxes.log(self, "val")

    def on_test_epoch_end(self) -> None:
        self.boxes.log(self, "test")

    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """Per-class precision-recall curves (IoU 0.5 and the mean over 0.5:0.95) of the last `split` evaluation."""
        return self.boxes.plot(folder, split)
