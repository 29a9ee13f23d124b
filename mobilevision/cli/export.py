"""`mobilevision export --weights CKPT --format onnx`: write an ONNX file and print a parity check against PyTorch.

The graph ends at the raw head outputs (plus the default boxes); decoding and NMS are the post-processing step
the task's documented post-processing, which `Predictor` applies (see `mobilevision.export.onnx`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from mobilevision.errors import UserError


def _user_images(spec: str, input_size: tuple[int, int], limit: int = 4) -> torch.Tensor:
    """Up to `limit` images of a user's source, resized to the graph's input: float [N, 3, H, W] in 0..255."""
    from mobilevision.inference.sources import open_source

    source = open_source(spec)
    arrays = []
    try:
        for frame in source:
            arrays.append(cv2.resize(frame.image, (input_size[1], input_size[0]), interpolation=cv2.INTER_LINEAR))
            if len(arrays) == limit:
                break
    finally:
        source.close()
    if not arrays:
        raise UserError(f"--parity-images {spec}: no readable image")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilevision export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="a mobilevision checkpoint")
    parser.add_argument("--model", help="export an untrained model by name instead (with --num-classes/--width-mult)")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--width-mult", type=float, default=None)
    parser.add_argument(
        "--format",
        choices=("onnx", "tflite", "executorch"),
        default="onnx",
        help="onnx; tflite (LiteRT, `pip install mobilevision[tflite]`); executorch (.pte, XNNPACK, "
        "`pip install mobilevision[executorch]`); the last two: fixed input size, batch 1, metadata in NAME.json",
    )
    parser.add_argument("--output", type=Path, default=None, help="output file (default: next to the weights, .onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="input size of the graph (default: the checkpoint's)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="threshold of the detection parity check (and of the --nms graph)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write a statically quantized model (QDQ, int8 "
        "per-channel weights, uint8 activations) next to the output: NAME.int8.onnx",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="with --int8: folder of calibration images (or a dataset split with images/)",
    )
    parser.add_argument("--calibration-images", type=int, default=64, help="with --int8: images used (first N)")
    parser.add_argument(
        "--int8-float-head",
        action="store_true",
        help="with --int8: keep the output convolutions "
        "(box/class predictors, segmentation classifier) in float: slightly closer to fp32, slower",
    )
    parser.add_argument(
        "--int8-keep-float",
        default="",
        metavar="NODES",
        help="with --int8: comma-separated nodes kept in float: stem (first conv), head (output convs), ONNX node "
        "names (listed by onnx's graph viewers), or auto: measure each layer group's cost on the calibration "
        "folder's next 32 images and keep the worst in float until the outputs are within --int8-tolerance",
    )
    parser.add_argument(
        "--int8-tolerance",
        type=float,
        default=None,
        help="with --int8-keep-float auto: raw-output error allowed "
        "(RMS of int8 - fp32 over RMS of fp32; default 0.05)",
    )
    parser.add_argument(
        "--int8-calibration-method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="with --int8: onnxruntime's activation calibration",
    )
    parser.add_argument(
        "--nms",
        action="store_true",
        help="detectors: also write NAME.nms.onnx (NAME.nms.tflite / .nms.pte with --format), decoding and NMS "
        "inside the graph (fp32): images in, boxes/scores/labels (fixed maximum count, zero-padded) and "
        "num_detections out, checked against our post-processing",
    )
    parser.add_argument(
        "--parity-images",
        default=None,
        help="image, folder or glob whose first 4 images the parity "
        "check uses as well as generated ones (default: generated only)",
    )
    args = parser.parse_args(list(argv))
    if (args.weights is None) == (args.model is None):
        parser.error("give exactly one of --weights CKPT or --model NAME")
    if args.opset < 17:
        parser.error(f"--opset must be >= 17, got {args.opset}")
    if args.int8 != (args.calibration is not None):
        parser.error("--int8 and --calibration DIR go together (static quantization calibrates on images)")
    if args.calibration_images < 1:
        parser.error(f"--calibration-images must be >= 1, got {args.calibration_images}")
    if args.input_size is not None and min(args.input_size) < 32:
        parser.error(f"--input-size must be at least 32x32, got {args.input_size}")

    from mobilevision.checkpoint import load_checkpoint, model_from_name
    from mobilevision.export.onnx import RELATIVE_TOLERANCE, export_onnx, make_session, parity_check, parity_images

    suffix = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte"}[args.format]
    if args.weights is not None:
        if args.num_classes is not None or args.width_mult is not None:
            parser.error("--num-classes and --width-mult go with --model (a checkpoint knows its own)")
        model, meta = load_checkpoint(args.weights)
        output = args.output or args.weights.with_suffix(suffix)
    else:
        model, meta = model_from_name(
            args.model, num_classes=args.num_classes, width_mult=args.width_mult, purpose="exported"
        )
        output = args.output or Path(f"{args.model}{suffix}")
    if output.suffix.lower() != suffix:
        parser.error(f"--output must end in {suffix} with --format {args.format}, got {output}")
    input_size = tuple(args.input_size) if args.input_size else meta.input_size
    model.eval()
    if args.format != "onnx":
        return _export_mobile(args, model, meta, output, input_size)  # type: ignore[arg-type]
    path = export_onnx(model, output, meta, opset=args.opset, input_size=input_size)  # type: ignore[arg-type]
    print(f"wrote {path} (opset {args.opset}, input {input_size[0]}x{input_size[1]}, dynamic batch)")
    images = parity_images(input_size)  # type: ignore[arg-type]
    if args.parity_images:
        images = torch.cat([images, _user_images(args.parity_images, input_size)])  # type: ignore[arg-type]
    report = parity_check(
        model,
        make_session(path),
        input_size=input_size,  # type: ignore[arg-type]
        thresholds=(args.score_threshold, 0.01),
        images=images,
    )
    print(report.format())
    if not report.ok(RELATIVE_TOLERANCE):
        print(
            f"mobilevision export: parity check FAILED (relative tolerance {RELATIVE_TOLERANCE:g} of max(1, max "
            "|value|), or different detections); the file was written but its outputs differ from PyTorch",
            file=sys.stderr,
        )
        return 1
    masks = " and masks" if any(row.get("threshold") == "mask" for row in report.detections) else ""
    print(f"parity OK (raw outputs within {RELATIVE_TOLERANCE:g} of their scale, same detections{masks})")
    if args.nms and _write_nms(model, meta, path, images, args.score_threshold, args.opset) != 0:
        return 1
    if args.int8:
        _write_int8(
            path,
            args.calibration,
            args.calibration_images,
            images,
            args.score_threshold,
            float_head=args.int8_float_head,
            keep_float=[name for name in args.int8_keep_float.split(",") if name],
            calibrate_method=args.int8_calibration_method,
            tolerance=args.int8_tolerance,
        )
    return 0


def _write_nms(
    model: torch.nn.Module, meta: object, path: Path, images: torch.Tensor, threshold: float, opset: int
) -> int:
    """Write NAME.nms.onnx (`export.nms`) and check its detections against our post-processing; 1 when off."""
    from mobilevision.export.nms import check_nms_graph, export_nms_onnx
    from mobilevision.export.onnx import make_session
    from mobilevision.io import atomic_path

    _require_detector(meta)
    output = path.with_suffix(".nms.onnx")
    size = tuple(images.shape[-2:])
    data = export_nms_onnx(model, size, score_threshold=threshold, opset=opset)  # type: ignore[arg-type]
    with atomic_path(output) as tmp_path:
        tmp_path.write_bytes(data)
    return check_nms_graph(model, make_session(data, num_threads=1), images, score_threshold=threshold, output=output)


def _require_detector(meta: object) -> None:
    if getattr(meta, "task", None) != "detection":
        raise UserError(
            f"--nms: only detectors have boxes to suppress (this checkpoint is {getattr(meta, 'task', '?')})"
        )


def _export_mobile(args: argparse.Namespace, model: torch.nn.Module, meta, output: Path, input_size) -> int:
    """`--format tflite | executorch` (`mobilevision.export.mobile_check.export_and_check`)."""
    if args.nms:
        _require_detector(meta)
    from mobilevision.export.mobile_check import export_and_check
    from mobilevision.export.onnx import parity_images

    images = parity_images(input_size)
    if args.parity_images:
        images = torch.cat([images, _user_images(args.parity_images, input_size)])
    return export_and_check(
        model,
        meta,
        output,
        fmt=args.format,
        input_size=input_size,
        images=images,
        threshold=args.score_threshold,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        nms=args.nms,
    )


def _write_int8(
    fp32: Path,
    calibration: Path,
    limit: int,
    images: torch.Tensor,
    threshold: float,
    *,
    float_head: bool = False,
    keep_float: Sequence[str] = (),
    calibrate_method: str = "minmax",
    tolerance: float | None = None,
) -> Path:
    """Quantize `fp32` into NAME.int8.onnx and print how far its outputs and detections are from fp32's on the
    parity images (information, not a gate: int8 is approximate by design; accuracy is measured by
    `mobilevision benchmark int8`)."""
    from mobilevision.export.onnx import make_session, read_metadata, session_parity
    from mobilevision.export.quantize import QUANTIZATION_KEY, calibration_paths, quantize_onnx, search_paths

    paths = calibration_paths(calibration, limit=limit)
    output = fp32.with_suffix(".int8.onnx")
    quantize_onnx(
        fp32,
        output,
        paths,
        float_head_outputs=float_head,
        keep_float=keep_float,
        calibrate_method=calibrate_method,
        search_images=search_paths(calibration, limit=limit) if "auto" in keep_float else (),
        tolerance=tolerance,
    )
    meta, metadata = read_metadata(output)
    recorded = metadata.get(QUANTIZATION_KEY) or {}
    record = json.loads(recorded) if isinstance(recorded, str) else recorded
    kept, groups = record.get("kept_float", []), (record.get("auto") or {}).get("groups")
    print(
        f"wrote {output} (int8 QDQ, per-channel weights, {calibrate_method} calibration on {len(paths)} images of "
        f"{calibration})"
    )
    shown = f"{len(kept)} nodes of the groups {', '.join(groups)}" if groups else ", ".join(kept)
    print(f"kept in float: {shown or 'none'}")
    report = session_parity(
        make_session(fp32),
        make_session(output),
        images=images,
        task=meta.task,
        metadata=metadata,
        input_size=meta.input_size,
        thresholds=(threshold,),
        iou=0.8,
    )
    print(
        report.format(
            ("fp32", "int8"), verdict=False, title="int8 check (approximate by design; detections paired at IoU >= 0.8)"
        )
    )
    return output
