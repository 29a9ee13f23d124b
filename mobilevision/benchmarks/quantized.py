"""Our models exported to ONNX and statically quantized to int8, for the benchmarks that time int8 beside fp32."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
from torch import nn

from mobilevision.benchmarks.images import photo_like_images


def int8_model(ours: nn.Module, meta: Any, folder: Path, count: int = 32) -> Path:
    """Our detector exported and statically quantized (`mobilevision.export.quantize`), calibrated on `count`
    generated photo-like images (not the benchmark image) written to `folder`."""
    from mobilevision.checkpoint import ModelMeta
    from mobilevision.export.onnx import export_onnx
    from mobilevision.export.quantize import quantize_onnx

    meta = meta or ModelMeta.for_model(ours)
    paths = []
    for i, image in enumerate(photo_like_images(count, tuple(meta.input_size), seed=7)):
        paths.append(folder / f"calibration_{i:03d}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    fp32 = export_onnx(copy.deepcopy(ours), folder / "model.onnx", meta)
    return quantize_onnx(fp32, folder / "model.int8.onnx", paths)
