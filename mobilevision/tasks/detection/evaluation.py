"""COCO box evaluation with pycocotools' COCOeval, the 12 standard numbers under our names, per-class AP, and the
results-file plumbing (model outputs -> COCO results dicts -> an atomically written JSON).

`mobilevision evaluate detection --gt ANNOTATIONS.json --predictions RESULTS.json [--json]` scores a results file on
its own. The numbers are COCOeval's own (0..1 scale), not a re-implementation: the test checks equality with
COCOeval run directly.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError, UserError
from mobilevision.io import atomic_write_text

# `evaluate_coco(backend=...)`: pycocotools' COCOeval, or faster-coco-eval's C++ one (optional extra `fast-eval`).
EVAL_BACKENDS: tuple[str, ...] = ("pycocotools", "faster")
# COCOeval.stats order (summarize()): AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100, AR s/m/l.
STAT_NAMES: tuple[str, ...] = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def validate_results(coco_gt: COCO, results: Any, *, source: str = "results") -> list[dict[str, Any]]:
    """Check a COCO bbox results list against the ground truth.

    Raises:
        DatasetError: not a list; an entry without integer `image_id`/`category_id`, four-number `bbox` and numeric
            `score`; or an `image_id` the ground truth does not have (named).
    """
    if not isinstance(results, list):
        raise DatasetError(f"{source}: expected a JSON list of {{image_id, category_id, bbox, score}} objects")
    image_ids = set(coco_gt.getImgIds())
    category_ids = set(coco_gt.getCatIds())
    unknown_categories: set[int] = set()
    for position, item in enumerate(results):
        if not isinstance(item, dict):
            raise DatasetError(f"{source}: entry {position}: not an object")
        image_id, category_id, bbox = item.get("image_id"), item.get("category_id"), item.get("bbox")
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DatasetError(f"{source}: entry {position}: 'image_id' must be an integer, got {image_id!r}")
        if image_id not in image_ids:
            raise DatasetError(f"{source}: entry {position}: image id {image_id} is not in the ground truth")
        if not isinstance(category_id, int) or isinstance(category_id, bool):
            raise DatasetError(f"{source}: entry {position}: 'category_id' must be an integer, got {category_id!r}")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DatasetError(f"{source}: entry {position}: 'bbox' must be [x, y, width, height], got {bbox!r}")
        if not _is_number(item.get("score")):
            raise DatasetError(f"{source}: entry {position}: 'score' must be a number, got {item.get('score')!r}")
        if category_id not in category_ids:
            unknown_categories.add(category_id)
    if unknown_categories:
        # COCOeval only scores the ground truth's categories; say so instead of silently dropping them.
        warnings.warn(
            f"{source}: detections with category ids not in the ground truth are ignored: {sorted(unknown_categories)}",
            DataWarning,
            stacklevel=2,
        )
    return results


def _results_coco(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """What `COCO.loadRes` builds for bbox results (area = w * h, ids 1..N, iscrowd 0), also for an empty list
    (which loadRes cannot take), and without modifying the caller's dicts."""
    anns = []
    for index, item in enumerate(results):
        x, y, w, h = (float(v) for v in item["bbox"])
        anns.append(
            {
                "image_id": item["image_id"],
                "category_id": item["category_id"],
                "bbox": [x, y, w, h],
                "score": float(item["score"]),
                "area": w * h,
                "id": index + 1,
                "iscrowd": 0,
                "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]],
            }
        )
    res = COCO()
    res.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def evaluate_coco(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    *,
    per_class: bool = True,
    verbose: bool = False,
    source: str = "results",
    image_ids: Sequence[int] | None = None,
    backend: str = "pycocotools",
) -> dict[str, Any]:
    """Score COCO bbox `results` against `coco_gt` with pycocotools' COCOeval.

    `image_ids` restricts the evaluation to those images (e.g. the part of a split a run evaluated); by default every
    ground-truth image counts, with or without detections.

    `backend="faster"` runs the same evaluation with faster-coco-eval's `COCOeval_faster` (per-image matching and
    accumulation in C++; `pip install mobilevision[fast-eval]`): the same 12 numbers (a test checks equality with
    pycocotools), several times faster on val2017-sized result files at threshold 0.01 (docs/benchmarks.md).

    Returns:
        `{name: float}` for the 12 names of `STAT_NAMES` (COCOeval's 0..1 scale; -1 where COCOeval has nothing to
        average, e.g. no large objects), plus `per_class` (if asked): a list of `{category_id, name, ap, ap_50}` in
        category-id order, `None` for a class without ground truth.

    Raises:
        DatasetError: malformed results, or a result for an image id the ground truth lacks (see
            `validate_results`); `source` names the results in the message.
        UserError: `backend="faster"` without faster-coco-eval installed.
    """
    if backend not in EVAL_BACKENDS:
        raise ValueError(f"backend must be one of {EVAL_BACKENDS}, got {backend!r}")
    results = validate_results(coco_gt, results, source=source)
    if backend == "faster":
        evaluator = _faster_eval(coco_gt, results)
    else:
        evaluator = COCOeval(coco_gt, _results_coco(coco_gt, results), iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    out: dict[str, Any] = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    if per_class:
        out["per_class"] = per_class_ap(coco_gt, evaluator)
    return out


def precision_recall(
    coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """Per-class precision-recall curves from pycocotools' accumulated `eval["precision"]` (area all, 100
    detections), for plotting: `recall` [101], `precision_50` [101, K] at IoU 0.5, `precision` [101, K] averaged
    over IoU 0.5:0.95 (-1 where a class has no ground truth), `names` [K], `ap_50` and `ap` [K] (None likewise).

    A second COCOeval run over the same results (`evaluate_coco` returns only the summary numbers); cheap next to
    the evaluation itself, and only run when pictures are asked for.
    """
    coco_dt = _results_coco(coco_gt, validate_results(coco_gt, results))
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    valid = precision > -1
    mean = np.where(valid.all(axis=0), np.where(valid, precision, 0).mean(axis=0), -1.0)
    rows = per_class_ap(coco_gt, evaluator)
    return {
        "recall": np.asarray(evaluator.params.recThrs),
        "precision_50": precision[0],
        "precision": mean,
        "names": [row["name"] for row in rows],
        "ap_50": [row["ap_50"] for row in rows],
        "ap": [row["ap"] for row in rows],
    }


def _faster_eval(coco_gt: COCO, results: list[dict[str, Any]]) -> Any:
    """faster-coco-eval's COCOeval over the same ground truth and the annotations `_results_coco` builds, minus the
    box polygons that only mask evaluation reads (building them cost as much as the C++ evaluation itself)."""
    try:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        raise UserError(
            "the 'faster' COCO evaluation backend needs faster-coco-eval: pip install 'mobilevision[fast-eval]'"
        ) from None
    anns = []
    for index, item in enumerate(results):
        x, y, w, h = (float(v) for v in item["bbox"])
        anns.append(
            {
                "image_id": item["image_id"],
                "category_id": item["category_id"],
                "bbox": [x, y, w, h],
                "score": float(item["score"]),
                "area": w * h,
                "id": index + 1,
                "iscrowd": 0,
            }
        )
    gt, dt = FasterCOCO(), FasterCOCO()
    gt.dataset = coco_gt.dataset
    dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt.createIndex()
    return COCOeval_faster(gt, dt, iouType="bbox")


def per_class_ap(coco_gt: COCO, evaluator: COCOeval) -> list[dict[str, Any]]:
    """AP@[.5:.95] and AP50 per category from an accumulated COCOeval (area 'all', 100 detections)."""
    precision = evaluator.eval["precision"]  # [T IoU thresholds, R recall points, K classes, A areas, M max dets]
    rows = []
    for k, category_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        name = coco_gt.cats[category_id].get("name", str(category_id))
        rows.append(
            {
                "category_id": int(category_id),
                "name": str(name),
                "ap": float(p[p > -1].mean()) if (p > -1).any() else None,
                "ap_50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None,
            }
        )
    return rows


def rescale_boxes(boxes: Any, input_size: tuple[int, int], orig_size: tuple[int, int]) -> Any:
    """Map x1 y1 x2 y2 boxes (tensor or array [N, 4]) from a resized input (h, w) back to the original (h, w)."""
    sy, sx = orig_size[0] / input_size[0], orig_size[1] / input_size[1]
    scale = boxes.new_tensor([sx, sy, sx, sy]) if hasattr(boxes, "new_tensor") else np.array([sx, sy, sx, sy])
    return boxes * scale


def to_coco_results(detections: Sequence[dict[str, Any]], image_ids: Sequence[int], meta: Any) -> list[dict[str, Any]]:
    """Model outputs -> COCO results dicts.

    Args:
        detections: per image, `boxes` [N, 4] x1 y1 x2 y2 in ORIGINAL image pixels (see `rescale_boxes`), `scores`
            [N], `labels` [N] contiguous 1..K (tensors or arrays).
        image_ids: the dataset's image id of each entry.
        meta: the `DetectionMeta` (or anything with `category_of(label)`) mapping labels back to dataset ids.

    Returns:
        `[{image_id, category_id, bbox: [x, y, w, h], score}]`, floats rounded to 0.01 px / 1e-5 as COCO's own
        result files are, to keep the JSON small.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"got {len(detections)} detections for {len(image_ids)} image ids")
    out = []
    for detection, image_id in zip(detections, image_ids):
        boxes = np.asarray(_to_numpy(detection["boxes"]), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(_to_numpy(detection["scores"]), dtype=np.float64).reshape(-1)
        labels = np.asarray(_to_numpy(detection["labels"])).reshape(-1)
        for box, score, label in zip(boxes, scores, labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(meta.category_of(int(label))),
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(score), 5),
                }
            )
    return out


def _to_numpy(value: Any) -> Any:
    if not hasattr(value, "detach"):
        return value
    value = value.detach().cpu()
    # NumPy has no bfloat16 (what bf16-mixed precision leaves in scores and boxes); results are float64 anyway.
    return (value.double() if value.is_floating_point() else value).numpy()


def write_coco_results(path: str | os.PathLike[str], results: list[dict[str, Any]]) -> Path:
    """Write a COCO results JSON (test-dev submission format) atomically; returns the path."""
    atomic_write_text(path, json.dumps(results, separators=(",", ":")) + "\n")
    return Path(path)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The 12 numbers, then the per-class AP table when present."""
    lines = [f"{name:<11} {metrics[name]:.4f}" for name in STAT_NAMES]
    rows = metrics.get("per_class")
    if rows:
        width = max(8, *(len(r["name"]) for r in rows))
        lines += ["", f"{'class':<{width}}  {'id':>4}  {'AP':>6}  {'AP50':>6}"]
        for r in rows:
            ap = "   n/a" if r["ap"] is None else f"{r['ap']:6.4f}"
            ap50 = "   n/a" if r["ap_50"] is None else f"{r['ap_50']:6.4f}"
            lines.append(f"{r['name']:<{width}}  {r['category_id']:>4}  {ap}  {ap50}")
    return "\n".join(lines)


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of [x, y, w, h] boxes."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def results_warnings(coco_gt: COCO, results: list[dict[str, Any]], *, sample: int = 2000) -> list[str]:
    """Reasons a structurally valid results list would score near 0 for a format mistake rather than a bad model.

    Checked (each a one-line message naming the fix): an empty list; no prediction whose `category_id` is a
    ground-truth category (label indices instead of dataset ids); every box within [0, 1.5] on images larger than
    that (normalised boxes); boxes that overlap the ground truth far better read as [x1, y1, x2, y2] than as COCO's
    [x, y, width, height]. Reads at most `sample` predictions (spread over the list) for the box checks.
    """
    if not results:
        return ["the predictions file is an empty list: every AP is 0 (did the model run, and on these images?)"]
    messages = []
    gt_categories = set(coco_gt.getCatIds())
    predicted = {int(r["category_id"]) for r in results}
    if gt_categories and not predicted & gt_categories:
        messages.append(
            f"no prediction's category_id is a ground-truth category (predictions use {sorted(predicted)[:8]}, the "
            f"ground truth {sorted(gt_categories)[:8]}): write the dataset's category ids, not label indices"
        )
    step = max(1, len(results) // sample)
    picked = results[::step][:sample]
    boxes = np.asarray([r["bbox"] for r in picked], dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(
        [[coco_gt.imgs[r["image_id"]].get("width", 0), coco_gt.imgs[r["image_id"]].get("height", 0)] for r in picked],
        dtype=np.float64,
    )
    if len(boxes) and boxes.max() <= 1.5 and float(np.median(sizes.max(axis=1))) > 16:
        messages.append(
            "every box lies within [0, 1.5] on images larger than that: boxes look normalised; "
            "COCO boxes are [x, y, width, height] in pixels"
        )
        return messages
    # xyxy: compare how well each box overlaps its image's ground truth under both readings.
    best_xywh, best_xyxy = [], []
    for box, result in zip(boxes, picked):
        gt = [a["bbox"] for a in coco_gt.imgToAnns.get(result["image_id"], []) if not a.get("iscrowd", 0)]
        if not gt or box[2] <= box[0] or box[3] <= box[1]:
            continue  # no ground truth to compare with, or not readable as x1 < x2, y1 < y2
        gt_boxes = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        as_xyxy = np.array([[box[0], box[1], box[2] - box[0], box[3] - box[1]]])
        best_xywh.append(float(_iou_xywh(box[None], gt_boxes).max()))
        best_xyxy.append(float(_iou_xywh(as_xyxy, gt_boxes).max()))
    if len(best_xyxy) >= 5:
        xywh, xyxy = float(np.mean(best_xywh)), float(np.mean(best_xyxy))
        if xyxy >= 0.3 and xyxy > 2 * xywh:
            messages.append(
                f"boxes look like [x1, y1, x2, y2]: read that way they overlap the ground truth with a mean best IoU "
                f"of {xyxy:.2f}, against {xywh:.2f} as COCO's [x, y, width, height]; write width = x2 - x1, "
                "height = y2 - y1"
            )
    return messages


# Public names, for the measurement code outside the task package (benchmarks/coco_eval.py).
results_coco = _results_coco
faster_eval = _faster_eval
