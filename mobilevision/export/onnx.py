"""ONNX export, the onnxruntime session, and the parity check against PyTorch.

What is exported comes from the task table (`mobilevision.tasks.table`), so this module knows no task:

- input `images`: float32 [B, 3, H, W], RGB in 0..255 (normalisation is inside the graph, as in the torch model);
  dynamic batch, and dynamic height and width for tasks that run on whole images (`Task.dynamic_spatial`);
- outputs: the task's raw outputs (`Task.onnx_outputs`, computed by its `export_module`); outputs that are constants
  of the input size (`Task.constant_outputs`, a detector's default boxes) are one Constant node. What turns raw
  outputs into results (a detector's decoding, threshold and NMS) is the task's documented post-processing, which
  `Predictor` applies after either backend;
- metadata_props: `mobilevision` = `ModelMeta.to_dict()` as JSON, plus the task's `export_metadata` entries (a
  detector's `mobilevision.postprocess` parameters), each a JSON value.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import META_KEY, ModelMeta
from mobilevision.errors import WeightsError
from mobilevision.io import atomic_path
from mobilevision.tasks.table import Task, get_task, load, task_of_model

INPUT_NAME = "images"
MIN_OPSET = 17


def export_bytes(
    model: nn.Module, meta: ModelMeta, *, opset: int = MIN_OPSET, input_size: tuple[int, int] | None = None
) -> bytes:
    """Serialised ONNX model (with metadata) of `model` at `input_size` (default: `meta.input_size`)."""
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    height, width = input_size or meta.input_size
    model = model.eval()
    task = task_of_model(model)
    # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, recursively.
    wrapped = load(task.export_module)(model).eval()
    outputs = task.onnx_outputs
    axes = {0: "batch", 2: "height", 3: "width"} if task.dynamic_spatial else {0: "batch"}
    dynamic = {INPUT_NAME: axes, **{name: axes for name in outputs if name not in task.constant_outputs}}
    dummy = torch.zeros(1, 3, height, width)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter: our graphs have no data-dependent control flow; tracer warnings are
        # about constant outputs (a detector's default boxes), which are constants of a fixed input size by design.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (dummy,),
            buffer,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes=dynamic,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    if task.constant_outputs:
        with torch.no_grad():
            values = dict(zip(outputs, wrapped(dummy)))
        for name in task.constant_outputs:
            _freeze_output(proto, name, values[name].numpy())
    meta_dict = meta.to_dict()
    meta_dict["input_size"] = [height, width]
    entries = {META_KEY: json.dumps(meta_dict)}
    if task.export_metadata:
        entries.update({key: json.dumps(value) for key, value in load(task.export_metadata)(model).items()})
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = "mobilevision"
    return proto.SerializeToString()


def branch_nodes(graph: Any, output: str) -> list[int]:
    """Positions in `graph.node` of the nodes that compute only `output`: its ancestors minus those of the other
    graph outputs (for `anchors`: the Range/Expand/Concat arithmetic over the feature maps' shapes)."""
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}

    def ancestors(names: list[str]) -> set[int]:
        seen: set[int] = set()
        stack = [producers[n] for n in names if n in producers]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack += [producers[name] for name in graph.node[i].input if name in producers]
        return seen

    outputs = [o.name for o in graph.output]
    if output not in outputs:
        return []
    return sorted(ancestors([output]) - ancestors([o for o in outputs if o != output]))


def _freeze_output(proto: Any, output: str, value: np.ndarray) -> None:
    """Replace the nodes that compute only `output` by one Constant node holding `value`.

    The tracer records the default boxes as arithmetic over the feature maps' shapes, which onnxruntime cannot fold
    (the batch axis is dynamic) and so evaluates on every run; the graph's spatial size is fixed, so they are a
    constant. (Returning a constant from the traced module instead is refused by the tracer: an output without data
    dependence on the input.)
    """
    from onnx import helper, numpy_helper

    drop = set(branch_nodes(proto.graph, output))
    kept = [node for i, node in enumerate(proto.graph.node) if i not in drop]
    constant = helper.make_node(
        "Constant",
        [],
        [output],
        name=f"{output}_constant",
        value=numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32)),
    )
    del proto.graph.node[:]
    proto.graph.node.extend([constant, *kept])


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    meta: ModelMeta,
    *,
    opset: int = MIN_OPSET,
    input_size: tuple[int, int] | None = None,
) -> Path:
    """Export to `path` atomically (temp file + rename); see the module docstring for the graph's interface."""
    data = export_bytes(model, meta, opset=opset, input_size=input_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_metadata(model: str | os.PathLike[str] | bytes) -> tuple[ModelMeta, dict[str, Any]]:
    """ModelMeta and the other metadata (JSON values by key, e.g. a detector's post-processing parameters) stored
    in an exported model (path or serialised bytes)."""
    import onnx

    try:
        proto = (
            onnx.load_from_string(model)
            if isinstance(model, bytes)
            else onnx.load(str(model), load_external_data=False)
        )
    except Exception as error:  # noqa: BLE001 - protobuf decode errors
        raise WeightsError(
            f"{model if not isinstance(model, bytes) else '<bytes>'}: not a readable ONNX model "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise WeightsError(
            f"{model if not isinstance(model, bytes) else '<bytes>'}: ONNX model without mobilevision "
            "metadata; export it with `mobilevision export`"
        )
    meta = ModelMeta.from_dict(json.loads(props[META_KEY]))
    return meta, {key: json.loads(value) for key, value in props.items() if key != META_KEY}


def make_session(
    model: str | os.PathLike[str] | bytes,
    *,
    num_threads: int | None = None,
    device: str = "cpu",
    options_hook: Callable[[Any], None] | None = None,
) -> Any:
    """An onnxruntime session with the options measured to be fastest here.

    Graph optimisation level ALL (constant folding, Conv+BN+activation fusion, NCHWc blocked layouts on x86: more
    than twice as fast as level EXTENDED on the SSDLite graph at one thread),
    sequential execution (the graph is a chain; parallel execution only adds scheduling), and
    `intra_op_num_threads` = `num_threads` (None: `torch.get_num_threads()`, so one setting, `OMP_NUM_THREADS` or
    `torch.set_num_threads`, governs both backends). `options_hook(options)` may add to the options before the
    session is made (the profiler of `benchmark onnx-ops`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = int(num_threads) if num_threads is not None else torch.get_num_threads()
    options.log_severity_level = 3
    if options_hook is not None:
        options_hook(options)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        raise WeightsError(f"{name}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from None


# Raw outputs agree when max |diff| <= RELATIVE_TOLERANCE * max(1, max |reference|): float32 rounding grows with the
# magnitude of the values (a trained detector's logits are in the tens, where 1e-4 absolute is a few ulps times the
# depth of the network), so an absolute bound fits only an untrained network's near-zero outputs.
RELATIVE_TOLERANCE = 1e-4


@dataclass
class ParityReport:
    """Raw-output differences (absolute and relative to the outputs' scale) and detection agreement between two
    runs of the same network (PyTorch vs onnxruntime, or fp32 vs int8)."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)  # max |reference value| per output
    # Per threshold: `threshold`, detection counts `reference` and `other`, `matched` pairs, unmatched `borderline`
    # ones (see `compare_runs`), and `identical` (every detection matched or borderline). A joint model adds a row
    # with threshold "mask": its masks' pixel agreement.
    detections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0

    @property
    def relative_diff(self) -> dict[str, float]:
        """max |diff| / max(1, max |reference|) per output: the error measured against the values' magnitude."""
        return {name: diff / max(1.0, self.scale.get(name, 0.0)) for name, diff in self.max_abs_diff.items()}

    @property
    def max_relative_diff(self) -> float:
        return max(self.relative_diff.values()) if self.max_abs_diff else 0.0

    @property
    def detections_identical(self) -> bool:
        return all(d["identical"] for d in self.detections)

    def ok(self, tolerance: float = RELATIVE_TOLERANCE) -> bool:
        """Raw outputs within `tolerance` relative to their scale, and the same detections at every threshold."""
        return self.max_relative_diff <= tolerance and self.detections_identical

    def format(
        self, names: tuple[str, str] = ("torch", "onnxruntime"), *, title: str = "parity check", verdict: bool = True
    ) -> str:
        """The report as lines; `verdict=False` leaves out identical/DIFFERENT (for int8, approximate by design)."""
        lines = [f"{title}, {names[0]} vs {names[1]}:"]
        for name, value in self.max_abs_diff.items():
            lines.append(
                f"  {name}: max |diff| {value:.3g}, max |value| {self.scale.get(name, 0.0):.3g}, "
                f"relative {self.relative_diff[name]:.3g}"
            )
        for d in self.detections:
            if d.get("threshold") == "mask":  # a joint model's masks (`tasks.multitask.inference.compare_masks`)
                lines.append(
                    f"  masks: {d['agreeing']} of {d['pixels']} pixels agree ({100 * d['agreement']:.3f}%), "
                    f"borderline {d['borderline']}"
                    + (f": {'identical' if d['identical'] else 'DIFFERENT'}" if verdict else "")
                )
                continue
            lines.append(
                f"  detections above {d['threshold']}: {names[0]} {d['reference']}, {names[1]} "
                f"{d['other']}, matched {d['matched']}, borderline {d['borderline']}"
                + (f": {'identical' if d['identical'] else 'DIFFERENT'}" if verdict else "")
            )
        return "\n".join(lines)


def parity_images(input_size: tuple[int, int], num_images: int = 2, *, seed: int = 0) -> Tensor:
    """float [N, 3, H, W] in 0..255: one of uniform noise, the others filled shapes on a smooth background (things a
    trained detector fires on, unlike noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = input_size
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(num_images - 1):
        base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), np.full((h, w), 128.0)], -1)
        image = np.clip(base * rng.uniform(0.3, 1.0), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            size = int(rng.integers(max(4, min(h, w) // 12), max(5, min(h, w) // 3)))
            if rng.random() < 0.5:
                cv2.circle(image, (cx, cy), size // 2, color, -1)
            else:
                cv2.rectangle(image, (cx - size // 2, cy - size // 2), (cx + size // 2, cy + size // 2), color, -1)
        images.append(image)
    return torch.from_numpy(np.stack(images[:num_images])).permute(0, 3, 1, 2).float().contiguous()


def parity_check(
    model: nn.Module,
    session: Any,
    *,
    input_size: tuple[int, int],
    thresholds: tuple[float, ...] = (0.3,),
    num_images: int = 3,
    seed: int = 0,
    images: Tensor | None = None,
) -> ParityReport:
    """Run the same images (default `parity_images`) through `model` (PyTorch, eval) and `session`; compare raw
    outputs (relative to their scale) and what the task makes of them (a detector's detections at each threshold:
    the task table's `compare` hook).

    Args:
        images: float [N, 3, H, W] RGB 0..255 at `input_size`, e.g. real images resized (default: generated).
    """
    images = parity_images(input_size, num_images, seed=seed) if images is None else images.float()
    model = model.eval()
    task = task_of_model(model)
    with torch.no_grad():
        reference = list(load(task.export_module)(model)(images))
    other = [
        torch.from_numpy(np.asarray(o)) for o in session.run(list(task.onnx_outputs), {INPUT_NAME: images.numpy()})
    ]
    return compare_outputs(task, reference, other, source=model, input_size=input_size, thresholds=thresholds)


def session_parity(
    reference: Any,
    other: Any,
    *,
    images: Tensor,
    task: str,
    metadata: dict[str, Any],
    input_size: tuple[int, int],
    thresholds: tuple[float, ...] = (0.3,),
    **compare: Any,
) -> ParityReport:
    """`parity_check` for two onnxruntime sessions of the same network (fp32 vs int8) on float [N, 3, H, W] images;
    `metadata` is the exported file's (`read_metadata`), holding what the task's comparison needs."""
    spec = get_task(task)
    feed = {INPUT_NAME: images.float().numpy()}
    runs = [[torch.from_numpy(np.asarray(o)) for o in s.run(list(spec.onnx_outputs), feed)] for s in (reference, other)]
    return compare_outputs(
        spec, runs[0], runs[1], source=metadata, input_size=input_size, thresholds=thresholds, **compare
    )


def compare_outputs(
    task: Task,
    reference: list[Tensor],
    other: list[Tensor],
    *,
    source: Any,
    input_size: tuple[int, int],
    thresholds: tuple[float, ...] = (),
    **compare: Any,
) -> ParityReport:
    """Raw-output differences of two runs (outputs in `task.onnx_outputs` order), plus the task's own comparison of
    their results when it declares one (`source`: the torch model, or an exported file's metadata)."""
    report = ParityReport()
    for name, ref, got in zip(task.onnx_outputs, reference, other):
        report.max_abs_diff[name] = float((ref.float() - got.float()).abs().max())
        report.scale[name] = float(ref.float().abs().max())
    if task.compare is not None:
        report.detections = load(task.compare)(
            source, reference, other, input_size=input_size, thresholds=thresholds, **compare
        )
    return report
