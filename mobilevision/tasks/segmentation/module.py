"""`SegmentationTask`: the LightningModule that trains and evaluates a `Segmenter` (Mobile DeepLabv3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.checkpoint import default_class_names
from mobilevision.models import build_model
from mobilevision.models.segmenter import Segmenter
from mobilevision.tasks.base import BaseTask, LRSchedule
from mobilevision.tasks.segmentation.inference import MF_SCALES, multi_scale_flip_probs
from mobilevision.tasks.segmentation.masks import VOID
from mobilevision.tasks.segmentation.parts import (
    MaskEvaluation,
    background_prior_bias,
    data_class_names,
    log_mask_scores,
)

__all__ = ["SegmentationTask", "log_mask_scores"]


class SegmentationTask(BaseTask):
    """Train Mobile DeepLabv3.

    Args:
        model: a segmenter name of `mobilevision.MODELS` ("deeplabv3_mobilenet_v2").
        num_classes: classes including background; linked from the DataModule by the CLI.
        width_mult, backbone_weights: the backbone's width and ImageNet weights (torchvision name or local file).
        backbone: a name of `mobilevision.models.backbones.BACKBONES`; None is the model builder's own. The map the
            head reads is the backbone's declared default (`DEFAULT_TAPS["deeplabv3"]`).
        output_stride: training output stride (16 in the paper's on-device model).
        atrous_rates: ASPP rates; () is the reduced head (paper Table 7, bold row).
        zero_init_residual: residual blocks start as identities when training from random weights (see
            `MobileNetV2`); loaded backbone weights or `init_from` replace it.
        input_size: training crop size (linked from the DataModule); stored for the predictor.
        eval_output_stride: evaluate at another output stride (the paper's OS=8 rows); None keeps the training one.
        multi_scale_flip: evaluate with the paper's MF strategy (scales `mf_scales`, each also flipped).
        background_prior: the background probability the untrained model gives every pixel; the other classes
            share the rest equally (the classifier's biases start at the log of these). Under Adam a bias moves
            about lr per step, so starting from zero biases a from-scratch model spends its first few hundred steps
            learning only that the background dominates (measured: docs/design-notes.md). None keeps zero biases.
            Only an initialisation: loaded weights replace it.
        class_weights: per-class weights of the cross-entropy (one per class, background first), or None for the
            plain loss of the paper; for data where some classes cover few pixels.
        schedule: as `BaseTask`'s; the DeepLab recipe is the poly schedule (power 0.9, the default here) with SGD
            and momentum 0.9.
        **training: `BaseTask`'s other options (optimizer, ema_decay, max_nonfinite_steps, channels_last,
            init_from).
        tf_exact: the TF reference's arithmetic (`mobilevision convert tf` checkpoints; see `deeplabv3_mobilenet_v2`),
            to fine-tune a converted model with `init_from`.
    """

    def __init__(
        self,
        *,
        model: str = "deeplabv3_mobilenet_v2",
        num_classes: int = 21,
        width_mult: float = 1.0,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        output_stride: int = 16,
        atrous_rates: Sequence[int] = (),
        zero_init_residual: bool = True,
        input_size: int = 513,
        eval_output_stride: int | None = None,
        multi_scale_flip: bool = False,
        mf_scales: Sequence[float] = MF_SCALES,
        background_prior: float | None = None,
        class_weights: Sequence[float] | None = None,
        schedule: LRSchedule | None = None,
        tf_exact: bool = False,
        **training: Any,
    ) -> None:
        super().__init__(schedule=schedule or LRSchedule(kind="poly", power=0.9), **training)
        self.model_name = model
        self.input_size = input_size
        self.model_kwargs: dict[str, Any] = {
            "num_classes": num_classes,
            "width_mult": width_mult,
            "output_stride": output_stride,
            "atrous_rates": list(atrous_rates),
            **({"backbone": backbone} if backbone is not None else {}),
            **({"tf_exact": True} if tf_exact else {}),
        }
        self.model: Segmenter = build_model(
            model, weights=backbone_weights, zero_init_residual=zero_init_residual, **self.model_kwargs
        )
        if background_prior is not None:
            self.model.head.set_class_bias(background_prior_bias(background_prior, num_classes))
        self.output_stride = output_stride
        self.eval_output_stride = eval_output_stride
        self.multi_scale_flip = multi_scale_flip
        self.mf_scales = tuple(mf_scales)
        self.eval_multiple = output_stride  # the DataModule's eval_multiple replaces it in setup()
        self.class_names: list[str] = default_class_names(num_classes)
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            valid = weights.shape == (num_classes,) and bool(torch.isfinite(weights).all())
            if not valid or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(
                    f"class_weights must be {num_classes} finite non-negative numbers (one per class, background "
                    f"first) with a positive sum, got {list(class_weights)}"
                )
        # A buffer follows the module to its device; not persistent: the configuration holds it.
        self.class_weights: Tensor | None
        self.register_buffer("class_weights", weights, persistent=False)
        self.masks = MaskEvaluation(num_classes)
        self.mask_metrics = nn.ModuleList(self.masks.modules())  # registered: they follow the task to its device
        self._finish_init()

    def class_specific_keys(self) -> list[str]:
        # The 1x1 classifier: one output per class (a fine-tune on another class list starts it fresh).
        return [k for k in self.model.state_dict() if k.startswith("head.classifier.")]

    # -------------------------------------------------------------------------------------------------- metadata
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        # The evaluation canvas rule travels in the checkpoint: the predictor pads as validation does.
        self.eval_multiple = int(getattr(datamodule, "eval_multiple", self.eval_multiple))
        self.class_names = data_class_names(
            datamodule, "class_names", self.model.num_classes, "num_classes", self.class_names
        )

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "task": "segmentation",
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "class_names": self.class_names,
            "category_ids": None,
            "input_size": [self.input_size, self.input_size],
            "inference": {
                "pad_multiple": self.eval_multiple,
                "output_stride": self.eval_output_stride or self.output_stride,
                "multi_scale_flip": self.multi_scale_flip,
                "mf_scales": list(self.mf_scales),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("mobilevision")
        if saved:
            self.class_names = list(saved["class_names"])

    # ----------------------------------------------------------------------------------------------------- steps
    def forward(self, images: Tensor) -> Tensor:
        """Scores [B, C, H, W] of the evaluation model with the configured inference strategy: logits, or with MF
        the class probabilities averaged over scales and flips (the argmax is what counts)."""
        if self.multi_scale_flip:
            return multi_scale_flip_probs(self.eval_model, images, scales=self.mf_scales)
        return self.eval_model(images)

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Cross-entropy over the non-void pixels (in float32, also under mixed precision), class-weighted if set."""
        weight = None if self.class_weights is None else self.class_weights.float()
        return F.cross_entropy(logits.float(), masks, weight=weight, ignore_index=VOID)

    def training_step(self, batch: tuple[Tensor, ...] | None, batch_idx: int) -> Tensor | None:
        if batch is None or batch[0].shape[0] < 2:
            return self.empty_step_loss()
        images, masks = batch[0], batch[1]
        logits = self.model(images)
        loss = self.loss(logits, masks)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return self.guard_loss(loss, [])

    def _set_eval_stride(self, output_stride: int) -> None:
        for model in {id(m): m for m in (self.model, self.eval_model)}.values():
            model.set_output_stride(output_stride)

    def on_validation_start(self) -> None:
        super().on_validation_start()
        if self.eval_output_stride and self.eval_output_stride != self.output_stride:
            self._set_eval_stride(self.eval_output_stride)

    def on_validation_end(self) -> None:
        if self.eval_output_stride and self.eval_output_stride != self.output_stride:
            self._set_eval_stride(self.output_stride)

    on_test_start = on_validation_start
    on_test_end = on_validation_end

    def eval_step(self, batch: tuple[Tensor, ...] | None, prefix: str) -> None:
        if batch is None:
            return
        images, masks, sizes = batch[0], batch[1], batch[2]
        # Each image runs on its own canvas (its size before the batch padding), images of one size together: the
        # image-pooling branch averages over the whole input, so extra padding from a larger neighbour would change
        # the answer, and validation would not equal `predict` (which sees one image at a time).
        for size in torch.unique(sizes, dim=0):
            index = (sizes == size).all(1).nonzero().flatten()
            height, width = int(size[0]), int(size[1])
            group_images = images[index, :, :height, :width]
            group_masks = masks[index, :height, :width]
            scores = self(group_images)
            if not self.multi_scale_flip:  # MF returns probabilities: its loss would not be a cross-entropy
                loss = self.loss(scores, group_masks)
                self.log(f"{prefix}/loss", loss, batch_size=len(index), sync_dist=True)
            # Padded pixels are void in the mask (the padding contract of the data module): no cropping is needed.
            self.masks.update(prefix, scores.argmax(1), group_masks)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).argmax(1)

    def on_validation_epoch_end(self) -> None:
        self.masks.log(self, "val", self.class_names)

    def on_test_epoch_end(self) -> None:
        self.masks.log(self, "test", self.class_names)

    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """The confusion matrix (rows: true class, normalised) of the last `split` evaluation."""
        return self.masks.plot(folder, split, self.class_names)
