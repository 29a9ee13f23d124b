"""Pictures of a run: training curves, per-class precision-recall curves (detection), a confusion matrix
(segmentation), written as PNGs with matplotlib's Agg backend (no display needed).

The functions take plain data (CSV paths, numpy arrays, class names) and know no task; `PlotCallback` writes them
at the end of `fit`, `validate` and `test` into `<default_root_dir>/plots/`, asking the task for its own evaluation
pictures through `BaseTask.plot_evaluation` (so no code here branches on a task's name).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np

from mobilevision.io import atomic_path

_MAX_PR_CLASSES = 20  # more lines than this on one axes cannot be told apart


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: files only, never a window (training runs on headless machines)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write `figure` as a PNG atomically and close it (figures left open leak memory over many epochs)."""
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)
    return Path(path)


def read_csv_columns(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """A CSV with a header as `{column: values}`; empty cells are NaN (Lightning's metrics.csv leaves a cell empty
    when a row logs other keys)."""
    columns: dict[str, list[float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key is None:
                    continue
                try:
                    number = float(value) if value not in (None, "") else math.nan
                except ValueError:
                    number = math.nan
                columns.setdefault(key, []).append(number)
    return columns


def _series(columns: dict[str, list[float]], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(columns.get(x_key, []), dtype=float), np.asarray(columns.get(y_key, []), dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def plot_training_curves(
    out: str | os.PathLike[str],
    *,
    metrics_csv: str | os.PathLike[str] | None = None,
    curve_csv: str | os.PathLike[str] | None = None,
    title: str = "",
) -> Path | None:
    """Losses (left: training and validation) and validation scores (right) against the training step, from
    Lightning's CSVLogger `metrics.csv` and/or mobilevision's `curve.csv` (the longer series of a key wins).
    COCO's -1 ("nothing to average", e.g. no large objects) is left out. Returns the PNG path, or None when there
    is nothing to draw."""
    sources = [read_csv_columns(p) for p in (metrics_csv, curve_csv) if p is not None and Path(p).is_file()]
    losses: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for columns in sources:
        for key in columns:
            if key in ("step", "epoch", "minutes") or not key.startswith(("train/", "val/")):
                continue
            x, y = _series(columns, "step", key)
            if "loss" not in key:
                keep = y >= 0
                x, y = x[keep], y[keep]
            table = losses if "loss" in key else scores
            if len(x) > len(table.get(key, ((), ()))[0]):
                table[key] = (x, y)
    if not losses and not scores:
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, (x, y) in sorted(losses.items()):
        left.plot(x, y, label=key, linewidth=1, marker="o" if key.startswith("val/") else None, markersize=3)
    left.set(xlabel="step", ylabel="loss", title="losses")
    for key, (x, y) in sorted(scores.items()):
        right.plot(x, y, marker="o", markersize=3, label=key, linewidth=1)
    right.set(xlabel="step", ylabel="score", title="validation scores")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            axes.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=axes.transAxes)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, out)


def plot_pr_curves(
    out: str | os.PathLike[str],
    precision: np.ndarray,
    recall_thresholds: Sequence[float],
    class_names: Sequence[str],
    *,
    iou_label: str = "IoU 0.5",
    ap: Sequence[float | None] | None = None,
) -> Path | None:
    """Per-class precision-recall curves: `precision` [R recall points, K classes] as pycocotools'
    `eval["precision"][t, :, :, area, maxdet]` (-1 where a class has no ground truth; those are left out).
    At most `_MAX_PR_CLASSES` curves, the classes with the highest AP first, so the legend stays readable."""
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall_thresholds, dtype=float)
    valid = [k for k in range(precision.shape[1]) if (precision[:, k] > -1).any()]
    if not valid:
        return None
    mean_precision = {k: float(precision[precision[:, k] > -1, k].mean()) for k in valid}
    ordered = sorted(valid, key=lambda k: -mean_precision[k])[:_MAX_PR_CLASSES]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 6))
    for k in ordered:
        p = np.where(precision[:, k] > -1, precision[:, k], np.nan)
        value = ap[k] if ap is not None and ap[k] is not None else mean_precision[k]
        axes.plot(recall, p, linewidth=1.2, label=f"{class_names[k]} (AP {value:.3f})")
    shown = "" if len(ordered) == len(valid) else f", {len(ordered)} of {len(valid)} classes"
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"precision-recall per class ({iou_label}{shown})",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    return _save(figure, out)


def plot_confusion_matrix(
    out: str | os.PathLike[str], matrix: np.ndarray, class_names: Sequence[str], *, title: str = ""
) -> Path:
    """The confusion matrix [true, predicted] of pixel counts, each row normalised to 1 (the diagonal is each
    class's recall), with the percentages written in the cells when there are at most 25 classes."""
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    k = len(matrix)
    plt = _pyplot()
    side = max(4.0, min(16.0, 0.45 * k + 2))
    figure, axes = plt.subplots(figsize=(side + 1.5, side))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class's pixels")
    names = [str(n) for n in class_names][:k] + [f"class_{i}" for i in range(len(class_names), k)]
    axes.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(k), names, fontsize=8)
    axes.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (rows sum to 1)")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if normalised[i, j] >= 0.005:
                    axes.text(
                        j,
                        i,
                        f"{100 * normalised[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if normalised[i, j] > 0.5 else "black",
                    )
    return _save(figure, out)


def _csv_logger_metrics(trainer: pl.Trainer) -> Path | None:
    """The run's CSVLogger `metrics.csv`, when the run logs with one."""
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir and (Path(log_dir) / "metrics.csv").is_file():
            return Path(log_dir) / "metrics.csv"
    return None


class PlotCallback(pl.Callback):
    """Writes the run's pictures into `<folder or default_root_dir/plots>` on the main process:

    - after `fit`: `training_curves.png` (metrics.csv and curve.csv), then the task's pictures of the last
      validation (`BaseTask.plot_evaluation`: PR curves for detection, the confusion matrix for segmentation);
    - after `validate` / `test` on their own: the task's pictures of that evaluation.

    Skipped under `fast_dev_run` (a smoke test writes no logs to plot). Plotting failures are warnings, never a
    lost run.
    """

    def __init__(self, folder: str | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.written: list[Path] = []

    def _out(self, trainer: pl.Trainer) -> Path:
        return Path(self.folder) if self.folder else Path(trainer.default_root_dir) / "plots"

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.is_global_zero and not trainer.fast_dev_run

    def _task_plots(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        plot = getattr(pl_module, "plot_evaluation", None)
        if callable(plot):
            self.written += plot(self._out(trainer), split=split)

    def _guarded(self, what: str, function: Any, *args: Any) -> None:
        import warnings

        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - a picture is never worth a failed run
            warnings.warn(f"could not draw the {what}: {type(error).__name__}: {error}", stacklevel=2)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return

        def curves() -> None:
            root = Path(trainer.default_root_dir)
            path = plot_training_curves(
                self._out(trainer) / "training_curves.png",
                metrics_csv=_csv_logger_metrics(trainer),
                curve_csv=root / "curve.csv",
                title=type(pl_module).__name__,
            )
            if path is not None:
                self.written.append(path)

        self._guarded("training curves", curves)
        self._guarded("evaluation pictures", self._task_plots, trainer, pl_module, "val")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer) and not trainer.sanity_checking and trainer.state.fn == "validate":
            self._guarded("evaluation pictures", self._task_plots, trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer):
            self._guarded("evaluation pictures", self._task_plots, trainer, pl_module, "test")
