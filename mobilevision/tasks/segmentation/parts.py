"""The segmentation pieces a task holds: the mask evaluation (a confusion matrix per split) and the background
prior of an untrained head. `SegmentationTask` uses them, and the joint model's task beside the detection pieces."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from mobilevision.tasks.segmentation.evaluation import format_table, scores
from mobilevision.tasks.segmentation.masks import VOID


def background_prior_bias(background_prior: float, num_classes: int) -> list[float]:
    """Class biases that make an untrained head give every pixel `background_prior` for the background and the
    other classes the rest in equal shares (the logs of those probabilities).

    Raises:
        ValueError: a prior outside (0, 1), or fewer than 2 classes.
    """
    if not 0.0 < background_prior < 1.0 or num_classes < 2:
        raise ValueError(f"background_prior must be in (0, 1) with 2 or more classes, got {background_prior}")
    rest = math.log((1.0 - background_prior) / (num_classes - 1))
    return [math.log(background_prior)] + [rest] * (num_classes - 1)


def data_class_names(datamodule: Any, attribute: str, predicted: int, option: str, current: list[str]) -> list[str]:
    """The mask class names a DataModule declares in `attribute` (`current` when it has none), checked against the
    `predicted` classes of the head.

    Raises:
        ValueError: a different count, naming the model option (`option`) to set.
    """
    names = getattr(datamodule, attribute, None)
    if not names:
        return current
    if len(names) != predicted:
        raise ValueError(
            f"the data's masks have {len(names)} classes but the model's segmentation head predicts {predicted}; "
            f"set model.{option}={len(names)}"
        )
    return list(names)


def log_mask_scores(
    task: pl.LightningModule,
    confusion: MulticlassConfusionMatrix,
    prefix: str,
    class_names: list[str],
    last: dict[str, Any],
) -> None:
    """End of an evaluation: `prefix`/miou and `prefix`/pixel_accuracy of the confusion matrix (summed over all
    processes by torchmetrics) logged, the per-class table printed, the matrix kept in `last[prefix]` for the
    task's `plot_evaluation`; the matrix is reset. Nothing is logged during Lightning's sanity check."""
    matrix = confusion.compute()
    confusion.reset()
    if task.trainer.sanity_checking:
        return
    last[prefix] = matrix.cpu().numpy()
    result = scores(last[prefix])
    task.log(f"{prefix}/miou", result["miou"] or 0.0, prog_bar=True)
    task.log(f"{prefix}/pixel_accuracy", result["pixel_accuracy"] or 0.0)
    rank_zero_info(f"\n{prefix} segmentation, epoch {task.current_epoch}:\n" + format_table(result, class_names))


class MaskEvaluation:
    """Mask scores (mIoU, pixel accuracy, per class) of a task's predictions: one confusion matrix per split (so
    validation inside fit never mixes with a test run; void pixels ignored), with update / log (synchronised by
    torchmetrics over the processes) / plot. The last matrix of each split stays in `last`."""

    def __init__(self, num_classes: int) -> None:
        self.confusion = {
            split: MulticlassConfusionMatrix(num_classes, ignore_index=VOID, validate_args=False)
            for split in ("val", "test")
        }
        self.last: dict[str, Any] = {}

    def modules(self) -> list[MulticlassConfusionMatrix]:
        """The metric modules, for the task to register (they follow it to its device)."""
        return list(self.confusion.values())

    def update(self, split: str, predicted: Tensor, target: Tensor) -> None:
        """Add class maps `predicted` [B, H, W] scored against `target` [B, H, W] (VOID ignored)."""
        self.confusion[split].update(predicted, target)

    def log(self, task: pl.LightningModule, split: str, class_names: list[str]) -> None:
        log_mask_scores(task, self.confusion[split], split, class_names, self.last)

    def plot(self, folder: Path, split: str, class_names: list[str], *, what: str = "confusion matrix") -> list[Path]:
        """The confusion matrix (rows: true class, normalised) of the last `split` evaluation."""
        if split not in self.last:
            return []
        from mobilevision.plots import plot_confusion_matrix

        return [
            plot_confusion_matrix(
                folder / f"{split}_confusion_matrix.png",
                self.last[split],
                class_names,
                title=f"{split} {what} (rows sum to 1)",
            )
        ]
