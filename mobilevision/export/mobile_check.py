"""The parity gate of `export --format tflite | executorch`: export, run the file, compare with PyTorch, refuse if off.

Apart from `mobilevision.export.mobile` because it runs the `Predictor` (calibration images, detections): the
session there is what the `Predictor` itself runs, so the two modules would otherwise import each other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from mobilevision.checkpoint import ModelMeta
from mobilevision.errors import UserError
from mobilevision.export.mobile import (
    MOBILE_TOLERANCE,
    MobileSession,
    _require,
    export_mobile,
    metadata_path,
)


def calibration_tensors(model: nn.Module, meta: ModelMeta, input_size: tuple[int, int], paths: Sequence[Path]) -> list:
    """float [1, 3, H, W] inputs of the calibration images, preprocessed as inference preprocesses them (the
    Predictor of the torch model at the export's input size); undecodable images skipped with a warning."""
    from mobilevision.inference.predictor import Predictor, load_input

    predictor = Predictor(model, meta=meta, input_size=input_size, optimize=False)
    tensors, skipped = [], 0
    for path in paths:
        try:
            image = load_input(path)
        except UserError as error:
            print(f"warning: calibration image {path} skipped ({error})")
            skipped += 1
            continue
        tensors.append(predictor.preprocess([image]).float().contiguous())
    if not tensors:
        raise UserError(f"--calibration: none of the {len(paths)} images decodes")
    if skipped:
        print(f"warning: {skipped} of {len(paths)} calibration images skipped")
    return tensors


def export_and_check(
    model: nn.Module,
    meta: ModelMeta,
    output: Path,
    *,
    fmt: str,
    input_size: tuple[int, int],
    images: Tensor,
    threshold: float,
    calibration: Path | None,
    calibration_images: int,
    nms: bool = False,
) -> int:
    """The CLI's `--format tflite | executorch`: write the fp32 file, gate it on parity with PyTorch (raw outputs
        within `MOBILE_TOLERANCE` of their scale, the same detections / masks), then with `calibration` the int8 file
        NAME.int8.SUFFIX and its report against fp32; with `nms` also NAME.nms.SUFFIX, decoding and NMS in the graph
    (`StaticNmsDetector`, fp32), gated on the same detections as our post-processing. Returns the exit code (1 when
    parity fails)."""
    import time

    from mobilevision.export.onnx import parity_check, session_parity

    _require(fmt)
    start = time.perf_counter()
    export_mobile(model, output, meta, fmt=fmt, input_size=input_size)
    size = output.stat().st_size / 1e6
    print(
        f"wrote {output} and {metadata_path(output).name} ({fmt} fp32, input {input_size[0]}x{input_size[1]}, "
        f"batch 1, {size:.2f} MB, {time.perf_counter() - start:.0f} s)"
    )
    fp32 = MobileSession(output, num_threads=1)
    report = parity_check(model, fp32, input_size=input_size, thresholds=(threshold, 0.01), images=images)
    print(report.format(("torch", fmt)))
    if not report.ok(MOBILE_TOLERANCE):
        print(
            f"mobilevision export: parity check FAILED (relative tolerance {MOBILE_TOLERANCE:g} of max(1, max "
            "|value|), or different detections); the file was written but its outputs differ from PyTorch",
            file=sys.stderr,
        )
        return 1
    print(f"parity OK (raw outputs within {MOBILE_TOLERANCE:g} of their scale, same detections / masks)")
    if nms and _write_nms(model, meta, output, fmt=fmt, input_size=input_size, images=images, threshold=threshold):
        return 1
    if calibration is None:
        return 0
    from mobilevision.export.quantize import calibration_paths

    paths = calibration_paths(calibration, limit=calibration_images)
    tensors = calibration_tensors(model, meta, input_size, paths)
    int8_path = output.with_suffix(".int8" + output.suffix)
    start = time.perf_counter()
    export_mobile(
        model,
        int8_path,
        meta,
        fmt=fmt,
        input_size=input_size,
        int8=True,
        calibration=tensors,
        extra={
            "mobilevision.quantization": {
                "calibration_images": len(tensors),
                "weights": "int8 per-channel symmetric",
                "activations": "int8 (pt2e MinMax)",
            }
        },
    )
    print(
        f"wrote {int8_path} ({fmt} int8, pt2e, per-channel weights, calibrated on {len(tensors)} images of "
        f"{calibration}, {int8_path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - start:.0f} s)"
    )
    int8 = MobileSession(int8_path, num_threads=1)
    report = session_parity(
        fp32,
        int8,
        images=images,
        task=meta.task,
        metadata=fp32.metadata,
        input_size=input_size,
        thresholds=(threshold,),
        iou=0.8,
    )
    print(
        report.format(
            ("fp32", "int8"), verdict=False, title="int8 check (approximate by design; detections paired at IoU >= 0.8)"
        )
    )
    return 0


def _write_nms(
    model: nn.Module,
    meta: ModelMeta,
    output: Path,
    *,
    fmt: str,
    input_size: tuple[int, int],
    images: Tensor,
    threshold: float,
) -> int:
    """NAME.nms.SUFFIX: the detector with decoding and NMS in plain tensor ops, checked like the ONNX NMS graph."""
    from mobilevision.export.nms import check_nms_graph, export_nms_mobile

    path = output.with_suffix(".nms" + output.suffix)
    export_nms_mobile(model, path, meta, fmt=fmt, input_size=input_size, score_threshold=threshold)
    return check_nms_graph(model, MobileSession(path, num_threads=1), images, score_threshold=threshold, output=path)
