"""`MultiTaskTask`: the LightningModule that trains and evaluates a `MultiTaskModel` (boxes and a mask, one pass).

It is a `DetectionTask` (the detection loss, COCO evaluation, label metadata, EMA, non-finite guard and resume all
carry over) with a segmentation head's loss and the segmentation scores beside them.

Losses. `loss = det_weight * L_det + seg_weight * L_seg` by default (`loss_weighting: fixed`). With
`loss_weighting: uncertainty` the weights are learned instead (Kendall, Gal and Cipolla 2018, "Multi-task learning
using uncertainty to weigh losses"): `loss = sum_i exp(-s_i) * L_i + s_i` with one learned log-variance `s_i` per
task, starting at `-log(weight_i)` so the first steps weigh as the fixed weights would. Each term is computed over
the images that carry its labels (`has_boxes`, `has_mask`): an image with only boxes trains only the detector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from mobilevision.checkpoint import default_class_names
from mobilevision.models.multitask import MULTITASK_EXTRA_DEPTHS, MultiTaskModel
from mobilevision.tasks.detection.module import DetectionTask
from mobilevision.tasks.segmentation.masks import VOID
from mobilevision.tasks.segmentation.module import log_mask_scores

LOSS_WEIGHTINGS = ("fixed", "uncertainty")


class MultiTaskTask(DetectionTask):
    """Train SSDLite and Mobile DeepLabv3 together on one backbone.

    Args:
        model: a multi-task model name of `mobilevision.MODELS` ("ssdlite_deeplabv3_mobilenet_v2").
        seg_num_classes: the segmentation head's classes, background included (checked against the DataModule's
            `mask_class_names` at setup).
        atrous_rates, head_channels, seg_dropout: the DeepLabv3 head (() is the paper's reduced head).
        background_prior: the background probability the untrained segmentation head gives every pixel (see
            `SegmentationTask`); None keeps zero biases.
        det_weight, seg_weight: the losses' weights (fixed), or the starting weights of uncertainty weighting.
        loss_weighting: "fixed" or "uncertainty" (learned, see the module docstring).
        taps, extra_depths: the detector's backbone maps (ending with the shared map; None: the backbone's
            `DEFAULT_TAPS["multitask"]`, MobileNetV2's layer 18) and extra layers.
        Everything else: see `DetectionTask` (the detector's loss, post-processing, training machinery).
    """

    task_name = "multitask"

    def __init__(
        self,
        *,
        model: str = "ssdlite_deeplabv3_mobilenet_v2",
        seg_num_classes: int = 21,
        atrous_rates: Sequence[int] = (),
        head_channels: int = 256,
        seg_dropout: float = 0.1,
        background_prior: float | None = None,
        det_weight: float = 1.0,
        seg_weight: float = 1.0,
        loss_weighting: str = "fixed",
        taps: Sequence[str] | None = None,
        extra_depths: Sequence[int] = MULTITASK_EXTRA_DEPTHS,
        **kwargs: Any,
    ) -> None:
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        if not (det_weight > 0 and seg_weight > 0):
            raise ValueError(f"det_weight and seg_weight must be positive, got {det_weight} and {seg_weight}")
        builder_kwargs = {
            "seg_num_classes": seg_num_classes,
            "atrous_rates": list(atrous_rates),
            "head_channels": head_channels,
            "dropout": seg_dropout,
        }
        super().__init__(model=model, taps=taps, extra_depths=extra_depths, builder_kwargs=builder_kwargs, **kwargs)
        if not isinstance(self.model, MultiTaskModel):
            raise ValueError(f"model {model!r} is not a multi-task model (one with a segmentation head)")
        self.model: MultiTaskModel
        if background_prior is not None and self.init_from is None:  # an initialisation: loaded weights win
            if not 0.0 < background_prior < 1.0:
                raise ValueError(f"background_prior must be in (0, 1), got {background_prior}")
            rest = math.log((1.0 - background_prior) / (seg_num_classes - 1))
            bias = [math.log(background_prior)] + [rest] * (seg_num_classes - 1)
            for network in {id(m): m for m in (self.model, self.eval_model)}.values():
                network.seg_head.set_class_bias(bias)  # type: ignore[union-attr]
        self.loss_weighting = loss_weighting
        self.weights = (det_weight, seg_weight)
        # Learned log-variances (uncertainty weighting); parameters of the task, not of the exported network.
        self.log_vars = nn.Parameter(
            -torch.log(torch.tensor(self.weights)), requires_grad=loss_weighting == "uncertainty"
        )
        self.mask_class_names: list[str] = default_class_names(seg_num_classes)
        self.val_confusion = MulticlassConfusionMatrix(seg_num_classes, ignore_index=VOID, validate_args=False)
        self.test_confusion = MulticlassConfusionMatrix(seg_num_classes, ignore_index=VOID, validate_args=False)
        self._last_confusion: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------------- metadata
    def setup(self, stage: str) -> None:
        super().setup(stage)
        names = getattr(getattr(self.trainer, "datamodule", None), "mask_class_names", None)
        if names:
            if len(names) != self.model.seg_num_classes:
                raise ValueError(
                    f"the data's masks have {len(names)} classes but the segmentation head predicts "
                    f"{self.model.seg_num_classes}; set model.seg_num_classes={len(names)}"
                )
            self.mask_class_names = list(names)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**super().checkpoint_meta(), "mask_class_names": self.mask_class_names}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("mobilevision") or {}
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

    def _eval_step(self, batch: tuple[Tensor, list[dict[str, Any]]], prefix: str) -> None:
        images, targets = batch
        if images.shape[0] == 0:
            return
        model: MultiTaskModel = self.eval_model  # type: ignore[assignment]
        outputs, anchors, _, logits = model.forward_all(images)
        batch_size = images.shape[0]
        # The validation loss: both terms, fixed weights (the learned ones would make epochs incomparable).
        masks = torch.stack([t["mask"] for t in targets]).to(images.device)
        self.log(f"{prefix}/loss_seg", self.seg_loss(logits, masks), batch_size=batch_size, sync_dist=True)
        input_size = (images.shape[-2], images.shape[-1])
        detections = model.postprocess(outputs, anchors, input_size)
        self.box_evaluators[prefix].update(detections, targets, input_size, self.label_meta)
        confusion = self.val_confusion if prefix == "val" else self.test_confusion
        for i, target in enumerate(targets):
            if target.get("has_mask", True):
                # Scored at the image's own size, as `predict` writes the mask: logits resized, then the argmax.
                reference = target.get("orig_mask", target["mask"]).to(images.device)
                resized = F.interpolate(
                    logits[i : i + 1].float(), size=tuple(reference.shape[-2:]), mode="bilinear", align_corners=False
                )
                confusion.update(resized.argmax(1), reference.unsqueeze(0))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        log_mask_scores(self, self.val_confusion, "val", self.mask_class_names, self._last_confusion)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        log_mask_scores(self, self.test_confusion, "test", self.mask_class_names, self._last_confusion)

    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """The detector's precision-recall curves and the segmentation confusion matrix of the last evaluation."""
        written = super().plot_evaluation(folder, split=split)
        if split in self._last_confusion:
            from mobilevision.plots import plot_confusion_matrix

            written.append(
                plot_confusion_matrix(
                    folder / f"{split}_confusion_matrix.png",
                    self._last_confusion[split],
                    self.mask_class_names,
                    title=f"{split} segmentation confusion matrix (rows sum to 1)",
                )
            )
        return written
