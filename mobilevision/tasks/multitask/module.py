"""`MultiTaskTask`: the LightningModule that trains and evaluates a `MultiTaskModel` (boxes and a mask, one pass).

It holds the detection pieces (`tasks.detection.parts`: the detector's options, the injected criterion, the label
metadata, the COCO evaluation) and the segmentation ones (`tasks.segmentation.parts`: the mask evaluation, the
background prior) beside `BaseTask`'s training machinery (EMA, non-finite guard, resume): composition, not a
subclass of either task.

Losses. `loss = det_weight * L_det + seg_weight * L_seg` by default (`loss_weighting: fixed`). With
`loss_weighting: uncertainty` the weights are learned instead (Kendall, Gal and Cipolla 2018, "Multi-task learning
using uncertainty to weigh losses"): `loss = sum_i exp(-s_i) * L_i + s_i` with one learned log-variance `s_i` per
task, starting at `-log(weight_i)` so the first steps weigh as the fixed weights would. Each term is computed over
the images that carry its labels (`has_boxes`, `has_mask`): an image with only boxes trains only the detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.checkpoint import default_class_names
from mobilevision.models.anchors import DefaultBoxes
from mobilevision.models.multitask import MULTITASK_EXTRA_DEPTHS, MultiTaskModel
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
from mobilevision.tasks.segmentation.inference import segmentation_mask
from mobilevision.tasks.segmentation.masks import VOID
from mobilevision.tasks.segmentation.parts import MaskEvaluation, background_prior_bias, data_class_names

LOSS_WEIGHTINGS = ("fixed", "uncertainty")


class MultiTaskTask(BaseTask):
    """Train SSDLite and Mobile DeepLabv3 together on one backbone.

    Args:
        model: a multi-task model name of `mobilevision.MODELS` ("ssdlite_deeplabv3_mobilenet_v2").
        num_classes, width_mult, backbone_weights, input_size, default_boxes, backbone, zero_init_residual,
            classification, criterion, score_threshold, nms_threshold, detections_per_image: the detector's, as
            `DetectionTask`'s.
        taps, extra_depths: the detector's backbone maps (ending with the shared map; None: the backbone's
            `DEFAULT_TAPS["multitask"]`, MobileNetV2's layer 18) and extra layers.
        seg_num_classes: the segmentation head's classes, background included (checked against the DataModule's
            `mask_class_names` at setup).
        atrous_rates, head_channels, seg_dropout: the DeepLabv3 head (() is the paper's reduced head).
        background_prior: the background probability the untrained segmentation head gives every pixel (see
            `SegmentationTask`); None keeps zero biases.
        det_weight, seg_weight: the losses' weights (fixed), or the starting weights of uncertainty weighting.
        loss_weighting: "fixed" or "uncertainty" (learned, see the module docstring).
        **training: `BaseTask`'s options (optimizer, schedule, ema_decay, max_nonfinite_steps, channels_last,
            init_from).
    """

    task_name = "multitask"

    def __init__(
        self,
        *,
        model: str = "ssdlite_deeplabv3_mobilenet_v2",
        num_classes: int = 91,
        width_mult: float = 1.0,
        backbone_weights: str | None = None,
        input_size: int = 320,
        default_boxes: DefaultBoxes | None = None,
        backbone: str | None = None,
        taps: Sequence[str] | None = None,
        extra_depths: Sequence[int] = MULTITASK_EXTRA_DEPTHS,
        zero_init_residual: bool = True,
        classification: str = "softmax",
        criterion: MultiBoxLoss | None = None,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.6,
        detections_per_image: int = 100,
        seg_num_classes: int = 21,
        atrous_rates: Sequence[int] = (),
        head_channels: int = 256,
        seg_dropout: float = 0.1,
        background_prior: float | None = None,
        det_weight: float = 1.0,
        seg_weight: float = 1.0,
        loss_weighting: str = "fixed",
        **training: Any,
    ) -> None:
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        if not (det_weight > 0 and seg_weight > 0):
            raise ValueError(f"det_weight and seg_weight must be positive, got {det_weight} and {seg_weight}")
        super().__init__(**training)
        self.model_name = model
        self.input_size = input_size
        network, self.model_kwargs = build_detector(
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
            seg_num_classes=seg_num_classes,
            atrous_rates=list(atrous_rates),
            head_channels=head_channels,
            dropout=seg_dropout,
        )
        if not isinstance(network, MultiTaskModel):
            raise ValueError(f"model {model!r} is not a multi-task model (one with a segmentation head)")
        self.model: MultiTaskModel = network
        if background_prior is not None and self.init_from is None:  # an initialisation: loaded weights win
            self.model.seg_head.set_class_bias(background_prior_bias(background_prior, seg_num_classes))
        self.criterion = bind_criterion(criterion, self.model)
        self.labels = DetectionLabels(self.model.num_classes)
        self.boxes = BoxEvaluation()
        self.loss_weighting = loss_weighting
        self.weights = (det_weight, seg_weight)
        # Learned log-variances (uncertainty weighting); parameters of the task, not of the exported network.
        self.log_vars = nn.Parameter(
            -torch.log(torch.tensor(self.weights)), requires_grad=loss_weighting == "uncertainty"
        )
        self.mask_class_names: list[str] = default_class_names(seg_num_classes)
        self.masks = MaskEvaluation(seg_num_classes)
        self.mask_metrics = nn.ModuleList(self.masks.modules())  # registered: they follow the task to its device
        self._finish_init()

    # -------------------------------------------------------------------------------------------------- metadata
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        self.labels.setup(datamodule)
        self.mask_class_names = data_class_names(
            datamodule, "mask_class_names", self.model.seg_num_classes, "seg_num_classes", self.mask_class_names
        )

    @property
    def label_meta(self) -> DetectionMeta:
        """The detector's label space (see `DetectionTask.label_meta`)."""
        return self.labels.current

    def checkpoint_meta(self) -> dict[str, Any]:
        meta = detection_checkpoint_meta(
            self.task_name, self.model_name, self.model_kwargs, self.labels, self.input_size
        )
        return {**meta, "mask_class_names": self.mask_class_names}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("mobilevision") or {}
        self.labels.load(saved)
        if saved.get("mask_class_names"):
            self.mask_class_names = list(saved["mask_class_names"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = super().configure_optimizers()
        if self.log_vars.requires_grad:
            optimizer.add_param_group({"params": [self.log_vars], "weight_decay": 0.0})
        return optimizer

    # ------------------------------------------------------------------------------------------------------ loss
    def seg_loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Cross-entropy over the non-void pixels (float32); 0, still joined to the graph, when every pixel is void."""
        if not bool((masks != VOID).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), masks, ignore_index=VOID)

    def losses(
        self, images: Tensor, targets: list[dict[str, Any]], model: MultiTaskModel | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Both loss terms and their weighted sum of one batch, and the segmentation logits."""
        model = model or self.model
        outputs, anchors, level_sizes, logits = model.forward_all(images)
        with_boxes = [i for i, t in enumerate(targets) if t.get("has_boxes", True)]
        if with_boxes:
            index = torch.as_tensor(with_boxes, device=images.device)
            det = self.criterion(
                {k: v.index_select(0, index) for k, v in outputs.items()},
                anchors,
                [targets[i] for i in with_boxes],
                level_sizes,
            )
        else:  # no image of this batch has boxes: a zero joined to the graph (every process all-reduces)
            zero = outputs["cls_logits"].sum() * 0.0
            det = {"loss": zero, "loss_box": zero, "loss_cls": zero}
        masks = torch.stack([t["mask"] for t in targets]).to(images.device)
        seg = self.seg_loss(logits, masks)
        terms = torch.stack([det["loss"], seg])
        if self.loss_weighting == "uncertainty":
            total = (torch.exp(-self.log_vars) * terms + self.log_vars).sum()
        else:
            total = (terms.new_tensor(self.weights) * terms).sum()
        return {
            "loss": total,
            "loss_det": det["loss"],
            "loss_box": det["loss_box"],
            "loss_cls": det["loss_cls"],
            "loss_seg": seg,
        }, logits

    # ----------------------------------------------------------------------------------------------------- steps
    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.eval_model(images)

    def training_step(self, batch: tuple[Tensor, list[dict[str, Any]]], batch_idx: int) -> Tensor | None:
        images, targets = batch
        if images.shape[0] < 2:
            return self.empty_step_loss()
        losses, _ = self.losses(images, targets)
        batch_size = images.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        for key in ("loss_det", "loss_box", "loss_cls", "loss_seg"):
            self.log(f"train/{key}", losses[key], batch_size=batch_size)
        if self.loss_weighting == "uncertainty":
            self.log("train/det_weight", torch.exp(-self.log_vars[0]).detach(), batch_size=batch_size)
            self.log("train/seg_weight", torch.exp(-self.log_vars[1]).detach(), batch_size=batch_size)
        return self.guard_loss(losses["loss"], [str(t.get("file", t.get("image_id"))) for t in targets])

    def eval_step(self, batch: tuple[Tensor, list[dict[str, Any]]], prefix: str) -> None:
        images, targets = batch
        if images.shape[0] == 0:
            return
        model = self.eval_model
        outputs, anchors, _, low = model.forward_all(images, upsample=False)
        logits = F.interpolate(low, size=images.shape[-2:], mode="bilinear", align_corners=False)
        batch_size = images.shape[0]
        # The validation loss: both terms, fixed weights (the learned ones would make epochs incomparable).
        masks = torch.stack([t["mask"] for t in targets]).to(images.device)
        self.log(f"{prefix}/loss_seg", self.seg_loss(logits, masks), batch_size=batch_size, sync_dist=True)
        input_size = (images.shape[-2], images.shape[-1])
        detections = model.postprocess(outputs, anchors, input_size)
        self.boxes.update(prefix, detections, targets, input_size, self.label_meta)
        for i, target in enumerate(targets):
            if target.get("has_mask", True):
                # Scored at the image's own size by `predict`'s own post-processing: the logits at the head's stride
                # upsampled once, straight to the image, then the argmax.
                reference = target.get("orig_mask", target["mask"]).to(images.device)
                mask = segmentation_mask(low[i], tuple(reference.shape[-2:])).long()
                self.masks.update(prefix, mask.unsqueeze(0), reference.unsqueeze(0))

    def on_validation_epoch_end(self) -> None:
        self.boxes.log(self, "val")
        self.masks.log(self, "val", self.mask_class_names)

    def on_test_epoch_end(self) -> None:
        self.boxes.log(self, "test")
        self.masks.log(self, "test", self.mask_class_names)

    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """The detector's precision-recall curves and the segmentation confusion matrix of the last evaluation."""
        return self.boxes.plot(folder, split) + self.masks.plot(
            folder, split, self.mask_class_names, what="segmentation confusion matrix"
        )
