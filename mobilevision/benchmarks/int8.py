"""`mobilevision benchmark int8`: int8 against fp32 onnxruntime on held-out data, accuracy and forward speed.

For a trained checkpoint (detector, segmenter or the joint model): export fp32 ONNX, quantize it
(`mobilevision.export.quantize`, calibration images from `--calibration`, which should not be the held-out split),
then run both files through `Predictor` (the same preprocessing and post-processing; only the graph differs) on the
held-out split `--data` (a shapes split: `images/`, `annotations.json`, `masks/`):
  detection     COCO mAP@[.5:.95] and mAP@.5 at score threshold 0.01 (`evaluate_coco`), and how many of the fp32
                detections above 0.3 the int8 model reproduces (same label, IoU >= 0.8);
  segmentation  mIoU and pixel accuracy over the split (one confusion matrix), and the fraction of pixels whose
                class agrees;
  multitask     both, from the same pass of the joint model.
`--keep-float auto` runs the sensitivity search (`mobilevision.export.sensitivity`) on the calibration folder's
images after the calibrated ones (never the held-out split); `--calibrate-method` picks onnxruntime's calibration.
Forward speed: `Predictor.forward` of both sessions on the same preprocessed batch, `--repeats` interleaved runs at
one thread (`--threads`), medians.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark int8 --weights CKPT --data SPLIT --calibration DIR`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.benchmarks import common
from mobilevision.benchmarks.timing import median_ms
from mobilevision.errors import UserError

AGREEMENT_IOU = 0.8


def _images(split: Path, limit: int | None) -> list[Path]:
    folder = split / "images"
    if not folder.is_dir():
        raise UserError(f"--data {split}: expected a split folder with images/ (and annotations.json or masks/)")
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    return paths[:limit] if limit else paths


def _scores(
    task: str, predictor: Any, split: Path, paths: list[Path], mask_classes: int
) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """The task's held-out metrics of `predictor` on the split, and its per-image results ("detections": result
    dicts, "masks": class masks): detection COCO mAP@[.5:.95] / mAP@.5 at threshold 0.01 (`evaluate_coco`),
    segmentation mIoU and pixel accuracy over one confusion matrix, the joint model both from the same pass."""
    from mobilevision.inference.predictor import load_input
    from mobilevision.tasks.segmentation.evaluation import ConfusionMatrix
    from mobilevision.tasks.segmentation.masks import read_index_mask

    boxes, masks = task in ("detection", "multitask"), task in ("segmentation", "multitask")
    if boxes:
        from mobilevision.tasks.detection.data import coco_from_dict, load_json, validate_coco
        from mobilevision.tasks.detection.evaluation import evaluate_coco

        annotations = split / "annotations.json"
        coco = coco_from_dict(validate_coco(load_json(annotations), annotations))
        image_ids = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    matrix = ConfusionMatrix(mask_classes) if masks else None
    results: list[dict[str, Any]] = []
    outputs: dict[str, list[Any]] = {"detections": [], "masks": []}
    evaluated = []
    for path in paths:
        out = predictor.predict_batch([load_input(path)])[0]
        if matrix is not None:
            matrix.update(out["mask"], read_index_mask(split / "masks" / f"{path.stem}.png"))
            outputs["masks"].append(out["mask"])
        if not boxes:
            continue
        if path.name not in image_ids:
            raise UserError(f"{path}: not in {annotations}")
        outputs["detections"].append(out)
        evaluated.append(image_ids[path.name])
        for box, score, category in zip(out["boxes"], out["scores"], out["category_ids"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": image_ids[path.name],
                    "category_id": int(category),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    scores: dict[str, float] = {}
    if boxes:
        metrics = evaluate_coco(coco, results, per_class=False, image_ids=evaluated)
        scores.update(map=metrics["map"], map_50=metrics["map_50"])
    if matrix is not None:
        computed = matrix.compute()
        scores.update(miou=computed["miou"], pixel_accuracy=computed["pixel_accuracy"])
    return scores, outputs


def _agreement(fp32: dict[str, list[Any]], int8: dict[str, list[Any]], threshold: float = 0.3) -> dict[str, float]:
    agreement: dict[str, float] = {}
    if fp32["masks"]:
        same = sum(int((a == b).sum()) for a, b in zip(fp32["masks"], int8["masks"]))
        agreement["pixels_same_class"] = same / sum(a.size for a in fp32["masks"])
    if not fp32["detections"]:
        return agreement
    from mobilevision.tasks.detection.parity import match_detections

    total = matched = 0
    for a, b in zip(fp32["detections"], int8["detections"]):
        keep_a, keep_b = a["scores"] > threshold, b["scores"] > threshold
        da = {"boxes": torch.as_tensor(a["boxes"][keep_a]), "labels": torch.as_tensor(a["labels"][keep_a])}
        db = {"boxes": torch.as_tensor(b["boxes"][keep_b]), "labels": torch.as_tensor(b["labels"][keep_b])}
        found, _ = match_detections(da, db, iou=AGREEMENT_IOU, pixels=0.0)
        total += len(found)
        matched += int(found.sum())
    agreement[f"fp32_detections_above_{threshold}"] = total
    agreement[f"reproduced_by_int8_iou_{AGREEMENT_IOU}"] = matched / total if total else float("nan")
    return agreement


def _forward_ms(predictors: dict[str, Any], image: np.ndarray, repeats: int) -> dict[str, float]:
    batches = {name: p.preprocess([image]) for name, p in predictors.items()}
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for step in range(repeats + 3):  # three warm-up rounds
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.forward(batches[name])
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: median_ms(v) for name, v in times.items()}


def run(
    *,
    weights: Path,
    data: Path,
    calibration: Path,
    calibration_images: int = 64,
    limit: int | None = None,
    repeats: int = 20,
    threads: int = 1,
    keep_float: Sequence[str] = (),
    calibrate_method: str = "minmax",
    tolerance: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.export.onnx import export_onnx
    from mobilevision.export.quantize import calibration_paths, quantize_onnx, search_paths
    from mobilevision.inference.predictor import Predictor, load_input

    torch.set_num_threads(threads)
    model, meta = load_checkpoint(weights)
    if meta.task not in ("detection", "segmentation", "multitask"):
        raise UserError(
            f"--weights {weights}: benchmark int8 scores detection, segmentation or joint checkpoints, not "
            f"{meta.task} (its fp32 vs int8 check: `mobilevision export --int8`)"
        )
    mask_classes = len(meta.mask_class_names or []) if meta.task == "multitask" else meta.num_classes
    paths = _images(data, limit)
    calibration_files = calibration_paths(calibration, limit=calibration_images)
    searched = search_paths(calibration, limit=calibration_images) if "auto" in keep_float else []
    held_out = {p.resolve() for p in paths}
    if any(p.resolve() in held_out for p in [*calibration_files, *searched]):
        raise UserError(f"--calibration {calibration} shares images with --data {data}: calibrate on other images")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx", meta)
        int8 = quantize_onnx(
            fp32,
            Path(tmp) / "model.int8.onnx",
            calibration_files,
            keep_float=keep_float,
            calibrate_method=calibrate_method,
            search_images=searched,
            tolerance=tolerance,
            log=log,
        )
        record = _record(int8)
        kept = list(record.get("kept_float", []))
        threshold = 0.3 if meta.task == "segmentation" else 0.01
        predictors = {
            name: Predictor(path, num_threads=threads, score_threshold=threshold)
            for name, path in (("fp32", fp32), ("int8", int8))
        }
        scores: dict[str, dict[str, float]] = {}
        outputs: dict[str, dict[str, list[Any]]] = {}
        for name, predictor in predictors.items():
            scores[name], outputs[name] = _scores(meta.task, predictor, data, paths, mask_classes)
        speed = _forward_ms(predictors, load_input(paths[0]), repeats)
    agreement = _agreement(outputs["fp32"], outputs["int8"])
    log(
        f"{weights} ({meta.task}, input {meta.input_size[0]}x{meta.input_size[1]}) on {len(paths)} held-out images "
        f"of {data}; int8 calibrated ({calibrate_method}) on {len(calibration_files)} images of {calibration}"
    )
    keys = list(scores["fp32"])
    log(f"{'model':<6}" + "".join(f"{k:>16}" for k in keys) + f"{'forward ms':>12}")
    for name in ("fp32", "int8"):
        log(f"{name:<6}" + "".join(f"{scores[name][k]:>16.4f}" for k in keys) + f"{speed[name]:>12.2f}")
    drop = {k: 100 * (scores["fp32"][k] - scores["int8"][k]) for k in keys}
    log(
        "drop (points): "
        + ", ".join(f"{k} {v:.2f}" for k, v in drop.items())
        + f"; int8 forward speed-up {speed['fp32'] / speed['int8']:.2f}x ({repeats} interleaved runs, {threads} "
        f"thread(s), medians)"
    )
    log("agreement: " + ", ".join(f"{k} {v:.4g}" for k, v in agreement.items()))
    groups = (record.get("auto") or {}).get("groups")
    shown = f"{len(kept)} nodes of the groups {', '.join(groups)}" if groups else ", ".join(kept)
    log(f"kept in float: {shown or 'none'}")
    return {
        "weights": str(weights),
        "task": meta.task,
        "images": len(paths),
        "scores": scores,
        "drop_points": drop,
        "forward_ms": speed,
        "speedup": speed["fp32"] / speed["int8"],
        "agreement": agreement,
        "kept_float": kept,
        "calibration": calibrate_method,
        "auto": record.get("auto"),
    }


def _record(path: Path) -> dict[str, Any]:
    """The int8 file's `mobilevision.quantization` metadata (how it was made, what was kept in float)."""
    import json

    from mobilevision.export.onnx import read_metadata
    from mobilevision.export.quantize import QUANTIZATION_KEY

    recorded = read_metadata(path)[1].get(QUANTIZATION_KEY) or {}
    return json.loads(recorded) if isinstance(recorded, str) else dict(recorded)


def main(argv: Sequence[str]) -> int:
    from mobilevision.export.quantize import CALIBRATION_METHODS

    parser = common.parser("int8", __doc__)
    parser.add_argument("--weights", type=Path, required=True, help="a trained mobilevision checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="held-out split: images/ + annotations.json|masks/")
    parser.add_argument("--calibration", type=Path, required=True, help="calibration images (not the held-out ones)")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N held-out images only")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved forward runs (medians reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--keep-float",
        default="",
        help="comma-separated nodes kept in float (as `export --int8-keep-float`: stem, head, node names, or auto: "
        "the sensitivity search on the calibration folder's next 32 images)",
    )
    parser.add_argument("--calibrate-method", choices=CALIBRATION_METHODS, default="minmax")
    parser.add_argument("--tolerance", type=float, default=None, help="with --keep-float auto: raw-output error")
    common.add_json(parser)
    args = parser.parse_args(list(argv))
    common.check_weights(args.weights)
    results = run(
        weights=args.weights,
        data=args.data,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        limit=args.limit,
        repeats=args.repeats,
        threads=args.threads,
        keep_float=[name for name in args.keep_float.split(",") if name],
        calibrate_method=args.calibrate_method,
        tolerance=args.tolerance,
    )
    return common.finish(results, args.json)
