"""`mobilevision benchmark int8`: int8 against fp32 onnxruntime on held-out data, accuracy and forward speed.

For a trained checkpoint (detector or segmenter): export fp32 ONNX, quantize it (`mobilevision.export.quantize`,
calibration images from `--calibration`, which should not be the held-out split), then run both files through
`Predictor` (the same preprocessing and post-processing; only the graph differs) on the held-out split `--data` (a
shapes split: `images/`, `annotations.json`, `masks/`):
  detection     COCO mAP@[.5:.95] and mAP@.5 at score threshold 0.01 (`evaluate_coco`), and how many of the fp32
                detections above 0.3 the int8 model reproduces (same label, IoU >= 0.8);
  segmentation  mIoU and pixel accuracy over the split (one confusion matrix), and the fraction of pixels whose
                class agrees.
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


def _detection_scores(predictor: Any, split: Path, paths: list[Path]) -> tuple[dict[str, float], list[dict]]:
    """COCO mAP of `predictor` (threshold 0.01) on the split; also its per-image results."""
    from mobilevision.inference.predictor import load_input
    from mobilevision.tasks.detection.data import coco_from_dict, load_json, validate_coco
    from mobilevision.tasks.detection.evaluation import evaluate_coco

    annotations = split / "annotations.json"
    coco = coco_from_dict(validate_coco(load_json(annotations), annotations))
    image_ids = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    results, per_image, evaluated = [], [], []
    for path in paths:
        if path.name not in image_ids:
            raise UserError(f"{path}: not in {annotations}")
        out = predictor.predict_batch([load_input(path)])[0]
        per_image.append(out)
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
    metrics = evaluate_coco(coco, results, per_class=False, image_ids=evaluated)
    return {"map": metrics["map"], "map_50": metrics["map_50"]}, per_image


def _segmentation_scores(
    predictor: Any, split: Path, paths: list[Path], num_classes: int
) -> tuple[dict[str, float], list[np.ndarray]]:
    from mobilevision.inference.predictor import load_input
    from mobilevision.tasks.segmentation.evaluation import ConfusionMatrix
    from mobilevision.tasks.segmentation.masks import read_index_mask

    matrix = ConfusionMatrix(num_classes)
    masks = []
    for path in paths:
        mask = predictor.predict_batch([load_input(path)])[0]["mask"]
        matrix.update(mask, read_index_mask(split / "masks" / f"{path.stem}.png"))
        masks.append(mask)
    scores = matrix.compute()
    return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]}, masks


def _agreement(task: str, fp32: list[Any], int8: list[Any], threshold: float = 0.3) -> dict[str, float]:
    if task == "segmentation":
        same = sum(int((a == b).sum()) for a, b in zip(fp32, int8))
        return {"pixels_same_class": same / sum(a.size for a in fp32)}
    from mobilevision.tasks.detection.parity import match_detections

    total = matched = 0
    for a, b in zip(fp32, int8):
        keep_a, keep_b = a["scores"] > threshold, b["scores"] > threshold
        da = {"boxes": torch.as_tensor(a["boxes"][keep_a]), "labels": torch.as_tensor(a["labels"][keep_a])}
        db = {"boxes": torch.as_tensor(b["boxes"][keep_b]), "labels": torch.as_tensor(b["labels"][keep_b])}
        found, _ = match_detections(da, db, iou=AGREEMENT_IOU, pixels=0.0)
        total += len(found)
        matched += int(found.sum())
    return {
        f"fp32_detections_above_{threshold}": total,
        f"reproduced_by_int8_iou_{AGREEMENT_IOU}": matched / total if total else float("nan"),
    }


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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.export.onnx import export_onnx
    from mobilevision.export.quantize import calibration_paths, quantize_onnx
    from mobilevision.inference.predictor import Predictor, load_input

    torch.set_num_threads(threads)
    model, meta = load_checkpoint(weights)
    if meta.task not in ("detection", "segmentation"):  # its scoring reads one label space per split
        raise UserError(
            f"--weights {weights}: benchmark int8 scores detection or segmentation checkpoints, not "
            f"{meta.task} (its fp32 vs int8 check: `mobilevision export --int8`)"
        )
    paths = _images(data, limit)
    calibration_files = calibration_paths(calibration, limit=calibration_images)
    held_out = {p.resolve() for p in paths}
    if any(p.resolve() in held_out for p in calibration_files):
        raise UserError(f"--calibration {calibration} shares images with --data {data}: calibrate on other images")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx", meta)
        int8 = quantize_onnx(fp32, Path(tmp) / "model.int8.onnx", calibration_files, keep_float=keep_float)
        kept = _kept_float(int8)
        threshold = 0.01 if meta.task == "detection" else 0.3
        predictors = {
            name: Predictor(path, num_threads=threads, score_threshold=threshold)
            for name, path in (("fp32", fp32), ("int8", int8))
        }
        scores: dict[str, dict[str, float]] = {}
        outputs: dict[str, list[Any]] = {}
        for name, predictor in predictors.items():
            if meta.task == "detection":
                scores[name], outputs[name] = _detection_scores(predictor, data, paths)
            else:
                scores[name], outputs[name] = _segmentation_scores(predictor, data, paths, meta.num_classes)
        speed = _forward_ms(predictors, load_input(paths[0]), repeats)
    agreement = _agreement(meta.task, outputs["fp32"], outputs["int8"])
    log(
        f"{weights} ({meta.task}, input {meta.input_size[0]}x{meta.input_size[1]}) on {len(paths)} held-out images "
        f"of {data}; int8 calibrated on {len(calibration_files)} images of {calibration}"
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
    log(f"kept in float: {', '.join(kept) if kept else 'none'}")
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
    }


def _kept_float(path: Path) -> list[str]:
    """The nodes the quantizer kept in float, as the int8 file's metadata records them."""
    import json

    from mobilevision.export.onnx import read_metadata
    from mobilevision.export.quantize import QUANTIZATION_KEY

    recorded = read_metadata(path)[1].get(QUANTIZATION_KEY) or {}
    return list((json.loads(recorded) if isinstance(recorded, str) else recorded).get("kept_float", []))


def main(argv: Sequence[str]) -> int:
    parser = common.parser("int8", __doc__)
    parser.add_argument("--weights", type=Path, required=True, help="a trained mobilevision checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="held-out split: images/ + annotations.json|masks/")
    parser.add_argument("--calibration", type=Path, required=True, help="calibration images (not the held-out ones)")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N held-out images only")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved forward runs (medians reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--keep-float", default="", help="comma-separated nodes kept in float (as `export --int8-keep-float`)"
    )
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
    )
    return common.finish(results, args.json)
