"""Semantic segmentation scores from a confusion matrix, and `mobilevision evaluate segmentation`.

The confusion matrix `cm` is int64 [C, C], rows = ground truth, columns = prediction, accumulated over a whole split
(never averaged per image). Pixels whose ground truth is void (255) are ignored, whatever was predicted there.

- IoU of class c = cm[c, c] / (row c + column c - cm[c, c]); None (JSON null) when the class is absent from both the
  ground truth and the prediction (row and column are zero): it is then undefined, not 0 or 1.
- mIoU = mean of the IoUs that are not None.
- pixel accuracy = trace / total (over non-void pixels).

Command line:
    mobilevision evaluate segmentation --gt DIR --predictions DIR [--num-classes N] [--split-list FILE] [--json]
Every `*.png` in `--gt` (or, with `--split-list`, every listed id: VOC's SegmentationClass holds train and val) needs
a prediction `<stem>.png` of the same size in `--predictions`; both are read as class indices (palette index or
single-channel value, see `masks.py`). Predictions for images not evaluated are ignored. The class names (and N, when
`--num-classes` is not given) come from the `classes.json` that `mobilevision predict` writes beside its masks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import BadSample
from mobilevision.data.labels import VOC_CLASSES, with_background
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.masks import VOID, invalid_labels, read_index_mask

__all__ = ["ConfusionMatrix", "confusion_matrix", "iou_per_class", "miou", "pixel_accuracy", "evaluate_folders", "main"]


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor, on any device
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def confusion_matrix(prediction: Any, target: Any, num_classes: int) -> np.ndarray:
    """Confusion matrix int64 [C, C] (rows = target, columns = prediction) of two same-shape label arrays.

    `prediction` and `target` are numpy arrays or torch tensors of any shape (e.g. [H, W] or [B, H, W]). Pixels with
    target 255 are ignored.

    Raises:
        ValueError: different shapes, a target label outside 0..C-1 and 255, or a prediction outside 0..C-1 (on a
            non-void pixel).
    """
    pred = _as_numpy(prediction).astype(np.int64, copy=False).ravel()
    true = _as_numpy(target).astype(np.int64, copy=False).ravel()
    if pred.shape != true.shape:
        raise ValueError(
            f"prediction and target sizes differ: {_as_numpy(prediction).shape} vs {_as_numpy(target).shape}"
        )
    keep = true != VOID
    pred, true = pred[keep], true[keep]
    bad_true = np.unique(true[(true < 0) | (true >= num_classes)])
    if bad_true.size:
        raise ValueError(f"target labels outside 0..{num_classes - 1} and {VOID}: {bad_true[:10].tolist()}")
    bad_pred = np.unique(pred[(pred < 0) | (pred >= num_classes)])
    if bad_pred.size:
        raise ValueError(f"predicted labels outside 0..{num_classes - 1}: {bad_pred[:10].tolist()}")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


class ConfusionMatrix:
    """Accumulates a confusion matrix over many (prediction, target) label arrays; void (255) targets ignored."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, prediction: Any, target: Any) -> None:
        """Add label arrays of equal shape (numpy or torch; [H, W] or [B, H, W])."""
        self.matrix += confusion_matrix(prediction, target, self.num_classes)

    def compute(self) -> dict[str, Any]:
        """`{miou, pixel_accuracy, iou_per_class}` (JSON-ready: undefined values are None)."""
        return scores(self.matrix)


def iou_per_class(matrix: np.ndarray) -> list[float | None]:
    """IoU of each class; None for a class absent from both ground truth and prediction."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    return [None if u == 0 else float(t / u) for t, u in zip(tp, union)]


def miou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes whose IoU is defined (not None); NaN if none is."""
    values = [v for v in iou_per_class(matrix) if v is not None]
    return float(np.mean(values)) if values else math.nan


def pixel_accuracy(matrix: np.ndarray) -> float:
    """Correct non-void pixels / all non-void pixels; NaN for an empty matrix."""
    matrix = np.asarray(matrix)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else math.nan


def scores(matrix: np.ndarray) -> dict[str, Any]:
    """`{miou, pixel_accuracy, iou_per_class}` of a confusion matrix, NaN turned into None for JSON."""

    def _none_if_nan(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "miou": _none_if_nan(miou(matrix)),
        "pixel_accuracy": _none_if_nan(pixel_accuracy(matrix)),
        "iou_per_class": iou_per_class(matrix),
    }


def _read(path: Path, what: str) -> np.ndarray:
    try:
        return read_index_mask(path)
    except BadSample as error:
        raise DatasetError(f"{path}: {what}: {error.reason}") from None


def evaluate_folders(
    gt_dir: str | Path, pred_dir: str | Path, num_classes: int, ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Score the prediction PNGs of `pred_dir` against the ground-truth PNGs of `gt_dir`, matched by file stem.

    Args:
        ids: evaluate only these stems (a split list); each needs its ground truth. None: every PNG of `gt_dir`.

    Returns:
        `{"miou": float, "pixel_accuracy": float, "iou_per_class": list[float | None] (length num_classes),
        "images": int}`.

    Raises:
        DatasetError: a missing folder, no ground truth, a missing, unreadable or mis-sized prediction, or a label out
            of range (ground truth outside 0..N-1 and 255, prediction outside 0..N-1); the message names the file.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if num_classes < 1 or num_classes > 255:
        raise ValueError(f"num_classes must be in 1..255 (255 is void), got {num_classes}")
    for folder, what in ((gt_dir, "ground-truth"), (pred_dir, "predictions")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: {what} folder not found")
    if ids is None:
        gt_files = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    else:
        gt_files = [gt_dir / f"{id_}.png" for id_ in ids]
        missing = [p for p in gt_files if not p.is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: ground truth not found for a listed id ({len(missing)} missing)")
    if not gt_files:
        raise DatasetError(f"{gt_dir}: no ground-truth .png masks found")
    accumulator = ConfusionMatrix(num_classes)
    for gt_path in gt_files:
        pred_path = pred_dir / f"{gt_path.stem}.png"
        if not pred_path.is_file():
            raise DatasetError(f"{pred_path}: missing prediction for ground truth {gt_path}")
        gt = _read(gt_path, "ground truth")
        pred = _read(pred_path, "prediction")
        if pred.shape != gt.shape:
            raise DatasetError(
                f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground "
                f"truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}"
            )
        bad = invalid_labels(gt, num_classes)
        if bad:
            raise DatasetError(f"{gt_path}: ground-truth labels outside 0..{num_classes - 1} and {VOID}: {bad[:10]}")
        bad = [int(v) for v in np.unique(pred[gt != VOID]) if v >= num_classes]
        if bad:
            raise DatasetError(f"{pred_path}: predicted labels outside 0..{num_classes - 1}: {bad[:10]}")
        accumulator.update(pred, gt)
    result = accumulator.compute()
    result["images"] = len(gt_files)
    return result


def format_table(result: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """A human-readable table: one line per class (IoU in %, '-' when undefined), then mIoU and pixel accuracy."""
    ious = result["iou_per_class"]
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(len(ious))]
    width = max(len(n) for n in [*names, "pixel accuracy"])
    lines = [f"{'class':<{width}}  IoU (%)"]
    for name, value in zip(names, ious):
        lines.append(f"{name:<{width}}  {'-' if value is None else f'{100 * value:6.2f}'}")

    def _pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:6.2f}"

    lines += [
        "",
        f"{'mIoU':<{width}}  {_pct(result['miou'])}",
        f"{'pixel accuracy':<{width}}  {_pct(result['pixel_accuracy'])}",
    ]
    if "images" in result:
        lines.append(f"{'images':<{width}}  {result['images']}")
    lines.append("('-': class absent from both ground truth and prediction, left out of the mean)")
    return "\n".join(lines)


def read_classes(pred_dir: Path) -> list[str] | None:
    """Class names from the `classes.json` that `mobilevision predict` writes (in `pred_dir` or its parent): the
    masks' label space, `mask_class_names` when the model also detects (the joint model), else `class_names`."""
    from mobilevision.data.jsonio import load_json

    for folder in (pred_dir, pred_dir.parent):
        if (folder / "classes.json").is_file():
            data = load_json(folder / "classes.json")
            key = "mask_class_names" if isinstance(data, dict) and "mask_class_names" in data else "class_names"
            names = data.get(key) if isinstance(data, dict) else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DatasetError(f"{folder / 'classes.json'}: expected {{'{key}': [str, ...]}}")
            return names
    return None


def main(argv: Sequence[str]) -> int:
    """`mobilevision evaluate segmentation --gt DIR --predictions DIR [--num-classes N] [--split-list F] [--json]`."""
    parser = argparse.ArgumentParser(
        prog="mobilevision evaluate segmentation",
        description="mIoU, pixel accuracy and per-class IoU of predicted index-PNG masks against ground truth.",
    )
    parser.add_argument("--gt", required=True, type=Path, help="folder of ground-truth PNG masks (255 = void)")
    parser.add_argument("--predictions", required=True, type=Path, help="folder of predicted PNG masks, same stems")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes N, background included (default: from the classes.json `mobilevision predict` wrote)",
    )
    parser.add_argument(
        "--split-list",
        type=Path,
        default=None,
        help="evaluate only the ids of this split list (VOC ImageSets/Segmentation/val.txt)",
    )
    parser.add_argument("--json", action="store_true", help="print {miou, pixel_accuracy, iou_per_class} as JSON")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2): report it as a return code
        return int(exit_.code or 0)
    names = read_classes(args.predictions)
    num_classes = args.num_classes if args.num_classes is not None else (len(names) if names else None)
    if num_classes is None:
        print(
            "mobilevision evaluate segmentation: give --num-classes N (no classes.json beside the predictions)",
            file=sys.stderr,
        )
        return 2
    if not 1 <= num_classes <= 255:
        print(
            f"mobilevision evaluate segmentation: --num-classes must be in 1..255, got {num_classes}", file=sys.stderr
        )
        return 2
    if names is not None and len(names) != num_classes:
        print(
            f"mobilevision evaluate segmentation: --num-classes {num_classes} but the model that wrote the "
            f"predictions has {len(names)} classes ({args.predictions.parent / 'classes.json'})",
            file=sys.stderr,
        )
        return 2
    from mobilevision.data.splits import read_id_list

    ids = read_id_list(args.split_list) if args.split_list is not None else None
    result = evaluate_folders(args.gt, args.predictions, num_classes, ids=ids)
    if args.json:
        print(json.dumps({key: result[key] for key in ("miou", "pixel_accuracy", "iou_per_class")}, indent=2))
    else:
        if names is None and num_classes == len(VOC_CLASSES) + 1:
            names = with_background(VOC_CLASSES)
        print(format_table(result, names))
    return 0
