"""int8: static quantization of an exported ONNX model with onnxruntime's quantization tools (no quantizer of ours).

`quantize_onnx(fp32.onnx, out.int8.onnx, calibration_images)`:
  1. `quant_pre_process` (onnxruntime's recommended pre-pass: shape inference and graph optimisation, so BatchNorm
     is folded into the convolutions before their weights are quantized);
  2. `quantize_static` in QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized op, which
     onnxruntime fuses into integer kernels), weights int8 per output channel (per-tensor scales lose the depthwise
     filters whose ranges differ by orders of magnitude), activations uint8 (the u8s8 kernels x86 runs fastest),
     MinMax calibration over the images through a `CalibrationDataReader`;
     only Conv/Add/Clip/Relu are quantized (`OP_TYPES`), so data movement (Concat/Reshape/Transpose/Resize)
     stays float (so do the default boxes, a constant of the graph, and, on request, the convolutions that produce
     the outputs);
     `--int8-keep-float auto` first searches which layer groups to keep in float (`mobilevision.export.sensitivity`),
     all trials on one calibration (onnxruntime's `calibration_cache_path`);
  3. the `metadata_props` of the fp32 model copied over (Predictor reads class names, input size and the
     post-processing from them), plus `mobilevision.quantization` saying how the file was made.

Calibration images are decoded and preprocessed by `Predictor.preprocess` of the fp32 model itself, so the
quantizer sees exactly the inputs inference will give the graph (resize or padding, layout, value range).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import IMAGE_SUFFIXES
from mobilevision.errors import UserError
from mobilevision.io import atomic_path

QUANTIZATION_KEY = "mobilevision.quantization"


def calibration_paths(folder: str | os.PathLike[str], *, limit: int = 64) -> list[Path]:
    """The first `limit` images (sorted by path) of `folder`, or of its `images/` sub-folder when it has one (a
    dataset split such as the shapes demo's).

    Raises:
        UserError: the folder does not exist or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--calibration {root}: not a folder")
    if (root / "images").is_dir():
        root = root / "images"
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"--calibration {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return paths[:limit]


def search_paths(folder: str | os.PathLike[str], *, limit: int = 64, count: int = 32) -> list[Path]:
    """Held-out images for `--int8-keep-float auto` (`mobilevision.export.sensitivity`): the `count` images of the
    calibration folder after the first `limit` (the calibrated ones), or those first `limit` when there are no more."""
    paths = calibration_paths(folder, limit=limit + count)
    return paths[limit:] or paths[:limit]


class ImageCalibrationReader:
    """onnxruntime `CalibrationDataReader` over image files: one `{"images": float32 [1, 3, H, W]}` feed per image,
    made by `predictor.preprocess` (the Predictor of the fp32 model), so calibration sees inference's inputs.

    An image that does not decode is skipped (its path is kept in `skipped`), as everywhere else in mobilevision.
    """

    def __init__(self, predictor: Any, paths: Sequence[Path]) -> None:
        self.predictor = predictor
        self.paths = list(paths)
        self.skipped: list[Path] = []
        self._iterator: Iterator[dict[str, np.ndarray]] | None = None

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        from mobilevision.inference.predictor import load_input

        for path in self.paths:
            try:
                image = load_input(path)
            except UserError:
                self.skipped.append(path)
                continue
            yield {"images": np.ascontiguousarray(self.predictor.preprocess([image]), dtype=np.float32)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iterator is None:
            self._iterator = self._feeds()
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = None

    def set_range(self, start_index: int, end_index: int) -> None:  # onnxruntime's optional batching interface
        self.paths = self.paths[start_index:end_index]
        self._iterator = None


# What gets quantized: the arithmetic that costs time. Concat/Reshape/Transpose/Resize stay float, so each
# predictor's output keeps its own scale instead of one 8-bit grid for all levels (measured: docs/design-notes.md).
OP_TYPES = ("Conv", "Add", "Clip", "Relu")
# Graph nodes the search for the output convolutions walks back through (data movement, no arithmetic).
_PASS_THROUGH = {"Reshape", "Transpose", "Concat", "Resize", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Cast"}


def _output_convs(model: Any, skip: Sequence[str] = ("anchors",)) -> list[str]:
    """The convolutions that produce the graph's outputs through data movement only (the detector's box and class
    predictors, the segmenter's classifier)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found: set[str] = set()
    seen: set[str] = set()
    stack = [producers[o.name] for o in model.graph.output if o.name not in skip and o.name in producers]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.add(node.name)
        elif node.op_type in _PASS_THROUGH:
            # Only the data input: a Reshape's shape or a Resize's sizes come from Shape arithmetic, not from a conv.
            data = node.input if node.op_type == "Concat" else node.input[:1]
            stack += [producers[i] for i in data if i in producers]
    return sorted(found)


# Shortcuts `--int8-keep-float` accepts besides node names: the classic int8 pitfalls (the 3-channel first
# convolution, whose input range is the image's; the output predictors).
KEEP_FLOAT_SHORTCUTS = ("stem", "head", "auto")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def resolve_keep_float(model: Any, names: Sequence[str]) -> list[str]:
    """Node names of `model` (an ONNX ModelProto) for `names`: node names as they are, "stem" = the first Conv of
    the graph, "head" = the convolutions producing the outputs (`_output_convs`); "auto" (the sensitivity search,
    `quantize_onnx`) is left out here.

    Raises:
        UserError: a name is neither a shortcut nor a node of the graph (the message lists a few Conv names).
    """
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    nodes = {node.name for node in model.graph.node}
    found: list[str] = []
    for name in names:
        if name == "auto":  # the sensitivity search's, resolved by quantize_onnx
            continue
        if name == "stem":
            found += convs[:1]
        elif name == "head":
            found += _output_convs(model)
        elif name in nodes:
            found.append(name)
        else:
            shown = ", ".join(convs[:3])
            raise UserError(
                f"--int8-keep-float {name}: not a node of the graph (use {' or '.join(KEEP_FLOAT_SHORTCUTS)}, or "
                f"a node name such as {shown})"
            )
    return sorted(dict.fromkeys(found))


def quantize_onnx(
    fp32: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: Sequence[Path],
    *,
    per_channel: bool = True,
    float_head_outputs: bool = False,
    keep_float: Sequence[str] = (),
    calibrate_method: str = "minmax",
    search_images: Sequence[Path] = (),
    tolerance: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write a statically quantized (QDQ, int8 weights per channel, uint8 activations) copy of the mobilevision
    ONNX model `fp32` to `output`, atomically; see the module docstring.

    `float_head_outputs` keeps the convolutions that produce the outputs in float (`_output_convs`): a little more
    accurate, but an 81-class SSDLite's class predictors are a quarter of its MACs, and in float they cost 6 of the
    int8 model's 24 ms (onnxruntime's own profiler, kernel time, one thread, 320x320, 2026-11-29).
    `keep_float` names more nodes to keep in float (`resolve_keep_float`: node names, "stem", "head"), or "auto":
    the sensitivity search (`mobilevision.export.sensitivity`) on `search_images` (default: the calibration images)
    picks the layer groups to keep until the raw outputs are within `tolerance` of fp32's. The kept nodes are listed
    in the file's `mobilevision.quantization` metadata ("kept_float"; the search's record under "auto").
    `calibrate_method`: onnxruntime's MinMax, Percentile (99.999) or Entropy calibration.

    Raises:
        UserError: no calibration image could be read, or an unknown calibration method.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mobilevision.export import sensitivity
    from mobilevision.inference.predictor import Predictor

    methods = dict(
        zip(CALIBRATION_METHODS, (CalibrationMethod.MinMax, CalibrationMethod.Percentile, CalibrationMethod.Entropy))
    )
    if calibrate_method not in methods:
        raise UserError(f"calibration method {calibrate_method}: use one of {', '.join(CALIBRATION_METHODS)}")
    predictor = Predictor(Path(fp32), num_threads=1)
    reader = ImageCalibrationReader(predictor, calibration)

    class _Reader(CalibrationDataReader):  # the abstract base onnxruntime checks for
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

    source = onnx.load(str(fp32))
    auto = "auto" in keep_float
    record: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        cache = Path(tmp) / "calibration.json"  # one calibration for every quantization below
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        kept = resolve_keep_float(graph, [*keep_float, *(["head"] if float_head_outputs else [])])

        def quantize(model: Path, out: Path, exclude: list[str]) -> None:
            quantize_static(
                str(model),
                str(out),
                None if cache.exists() else _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[calibrate_method],
                op_types_to_quantize=list(OP_TYPES),
                nodes_to_exclude=exclude,
                calibration_cache_path=cache,
            )
            if not cache.exists() or len(reader.paths) == len(reader.skipped):
                raise UserError(f"none of the {len(reader.paths)} calibration images could be read")

        if auto:
            feeds = list(ImageCalibrationReader(predictor, search_images or calibration)._feeds())
            result = sensitivity.search_keep_float(
                prepared,
                quantize,
                sensitivity.OutputError(prepared, feeds),
                sensitivity.layer_groups(graph, OP_TYPES),
                fixed=kept,
                tolerance=sensitivity.DEFAULT_TOLERANCE if tolerance is None else tolerance,
            )
            for line in result.lines():
                (log or print)(line)
            kept, record = result.nodes, {"auto": {**result.record(), "held_out_images": len(feeds)}}
        quantize(prepared, quantized, kept)
        used = len(reader.paths) - len(reader.skipped)
        proto = onnx.load(str(quantized))
    del proto.metadata_props[:]
    for prop in source.metadata_props:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    proto.metadata_props.add(
        key=QUANTIZATION_KEY,
        value=json.dumps(
            {
                "format": "QDQ",
                "weights": "int8, per channel" if per_channel else "int8, per tensor",
                "activations": "uint8",
                "calibration": dict(zip(CALIBRATION_METHODS, ("MinMax", "Percentile", "Entropy")))[calibrate_method],
                "calibration_images": used,
                "kept_float": kept,
                **record,
            }
        ),
    )
    proto.producer_name = "mobilevision"
    path = Path(output)
    with atomic_path(path) as tmp_path:
        tmp_path.write_bytes(proto.SerializeToString())
    return path
