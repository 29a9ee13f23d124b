"""ONNX export, the onnxruntime session, and the parity check against PyTorch.

The graph (opset >= 17, dynamic batch; a detector's spatial size is fixed at the model's input size, its default
boxes being constants of it; a segmenter's height and width are dynamic, since it runs on whole padded images):

- input `images`: float32 [B, 3, H, W], RGB in 0..255 (normalisation is inside the graph, as in the torch model).
- detection outputs: `cls_logits` [B, A, C], `bbox_regression` [B, A, 4] (raw head outputs) and `anchors` [A, 4]
  (default boxes x1y1x2y2 in input pixels, a constant of the graph). Box decoding, softmax and NMS are *not* in the
  graph: they are the documented post-processing step `mobilevision.inference.postprocess.DetectionPostprocess`,
  whose parameters are in the metadata entry `mobilevision.postprocess`; `Predictor` applies it.
- segmentation output: `logits` [B, C, H, W] (argmax and resizing to the image are post-processing).
- metadata_props: `mobilevision` = `ModelMeta.to_dict()` as JSON, `mobilevision.postprocess` = JSON parameters.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import META_KEY, ModelMeta
from mobilevision.errors import WeightsError
from mobilevision.inference.postprocess import DetectionPostprocess
from mobilevision.io import atomic_path

INPUT_NAME = "images"
DETECTION_OUTPUTS: tuple[str, ...] = ("cls_logits", "bbox_regression", "anchors")
SEGMENTATION_OUTPUTS: tuple[str, ...] = ("logits",)
POSTPROCESS_KEY = "mobilevision.postprocess"
MIN_OPSET = 17


class _RawDetector(nn.Module):
    """Detector -> (cls_logits, bbox_regression, anchors): the exported surface, no decoding or NMS."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs, anchors = self.detector.forward_raw(images)
        return outputs["cls_logits"], outputs["bbox_regression"], anchors


def is_detector(model: nn.Module) -> bool:
    from mobilevision.tasks.detection.model import Detector

    return isinstance(model, Detector)


def postprocess_for(model: nn.Module, *, score_threshold: float = 0.3) -> DetectionPostprocess:
    """The post-processing parameters a Detector was built with (NMS IoU, top-k, cap, box coder)."""
    return DetectionPostprocess(
        score_threshold=score_threshold,
        nms_threshold=float(model.nms_threshold),
        topk_candidates=int(model.topk_candidates),
        detections_per_image=int(model.detections_per_image),
        box_coder_weights=tuple(model.box_coder.weights),  # type: ignore[arg-type]
        classification=str(getattr(model, "classification", "softmax")),
    )


def export_bytes(model: nn.Module, meta: ModelMeta, *, opset: int = MIN_OPSET,
                 input_size: tuple[int, int] | None = None) -> bytes:
    """Serialised ONNX model (with metadata) of `model` at `input_size` (default: `meta.input_size`)."""
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    height, width = input_size or meta.input_size
    model = model.eval()
    detector = is_detector(model)
    # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, recursively.
    wrapped = _RawDetector(model).eval() if detector else model
    outputs = DETECTION_OUTPUTS if detector else SEGMENTATION_OUTPUTS
    if detector:
        dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs if name != "anchors"}}
    else:
        spatial = {0: "batch", 2: "height", 3: "width"}
        dynamic = {INPUT_NAME: spatial, **{name: spatial for name in outputs}}
    dummy = torch.zeros(1, 3, height, width)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter: our graph has no data-dependent control flow; tracer warnings are about
        # the anchors, which are constants of a fixed input size by design.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (dummy,), buffer, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=list(outputs), dynamic_axes=dynamic, dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    if detector:
        with torch.no_grad():
            _, anchors = model.forward_raw(dummy)
        _freeze_output(proto, "anchors", anchors.numpy())
    meta_dict = meta.to_dict()
    meta_dict["input_size"] = [height, width]
    entries = {META_KEY: json.dumps(meta_dict)}
    if detector:
        entries[POSTPROCESS_KEY] = json.dumps(asdict(postprocess_for(model)))
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
    constant = helper.make_node("Constant", [], [output], name=f"{output}_constant",
                                value=numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32)))
    del proto.graph.node[:]
    proto.graph.node.extend([constant, *kept])


def export_onnx(model: nn.Module, path: str | os.PathLike[str], meta: ModelMeta, *, opset: int = MIN_OPSET,
                input_size: tuple[int, int] | None = None) -> Path:
    """Export to `path` atomically (temp file + rename); see the module docstring for the graph's interface."""
    data = export_bytes(model, meta, opset=opset, input_size=input_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_metadata(model: str | os.PathLike[str] | bytes) -> tuple[ModelMeta, DetectionPostprocess | None]:
    """ModelMeta and post-processing parameters stored in an exported model (path or serialised bytes)."""
    import onnx

    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf decode errors
        raise WeightsError(f"{model if not isinstance(model, bytes) else '<bytes>'}: not a readable ONNX model "
                           f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise WeightsError(f"{model if not isinstance(model, bytes) else '<bytes>'}: ONNX model without mobilevision "
                           "metadata; export it with `mobilevision export`")
    meta = ModelMeta.from_dict(json.loads(props[META_KEY]))
    post = None
    if POSTPROCESS_KEY in props:
        values = json.loads(props[POSTPROCESS_KEY])
        values["box_coder_weights"] = tuple(values["box_coder_weights"])
        post = DetectionPostprocess(**values)
    return meta, post


def make_session(model: str | os.PathLike[str] | bytes, *, num_threads: int | None = None, device: str = "cpu") -> Any:
    """An onnxruntime session with the options measured to be fastest here.

    Graph optimisation level ALL (constant folding, Conv+BN+activation fusion, NCHWc blocked layouts on x86:
    SSDLite 81 classes at 320x320, one thread, 30 ms vs 69 ms at level EXTENDED; denormals-as-zero changed nothing),
    sequential execution (the graph is a chain; parallel execution only adds scheduling), and
    `intra_op_num_threads` = `num_threads` (None: `torch.get_num_threads()`, so one setting, `OMP_NUM_THREADS` or
    `torch.set_num_threads`, governs both backends).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = int(num_threads) if num_threads is not None else torch.get_num_threads()
    options.log_severity_level = 3
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
# Two detections are the same when labels are equal and the boxes overlap with IoU >= this (or every coordinate is
# within BOX_PIXEL_TOLERANCE px, for tiny boxes whose IoU moves fast).
DETECTION_IOU = 0.99
BOX_PIXEL_TOLERANCE = 0.5
SCORE_MARGIN = 1e-3


@dataclass
class ParityReport:
    """Raw-output differences (absolute and relative to the outputs' scale) and detection agreement between two
    runs of the same network (PyTorch vs onnxruntime, or fp32 vs int8)."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)  # max |reference value| per output
    # Per threshold: `threshold`, detection counts `reference` and `other`, `matched` pairs, unmatched `borderline`
    # ones (see `compare_runs`), and `identical` (every detection matched or borderline).
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

    def format(self, names: tuple[str, str] = ("torch", "onnxruntime"), *, title: str = "parity check",
               verdict: bool = True) -> str:
        """The report as lines; `verdict=False` leaves out identical/DIFFERENT (for int8, approximate by design)."""
        lines = [f"{title}, {names[0]} vs {names[1]}:"]
        for name, value in self.max_abs_diff.items():
            lines.append(f"  {name}: max |diff| {value:.3g}, max |value| {self.scale.get(name, 0.0):.3g}, "
                         f"relative {self.relative_diff[name]:.3g}")
        for d in self.detections:
            lines.append(f"  detections above {d['threshold']}: {names[0]} {d['reference']}, {names[1]} "
                         f"{d['other']}, matched {d['matched']}, borderline {d['borderline']}"
                         + (f": {'identical' if d['identical'] else 'DIFFERENT'}" if verdict else ""))
        return "\n".join(lines)


def match_detections(a: dict[str, Tensor], b: dict[str, Tensor], *, iou: float = DETECTION_IOU,
                     pixels: float = BOX_PIXEL_TOLERANCE) -> tuple[Tensor, Tensor]:
    """Pair the detections of `a` and `b` one to one: same label, and IoU >= `iou` or every coordinate within
    `pixels`. Order does not matter (scores equal up to rounding may list either way).

    Args:
        a, b: `boxes` float [N, 4] x1y1x2y2, `labels` int64 [N], in decreasing score order (as
            `DetectionPostprocess` returns them).

    Returns:
        bool [Na] and bool [Nb]: which detections of each side found a partner.
    """
    from torchvision.ops import box_iou

    found_a = torch.zeros(len(a["labels"]), dtype=torch.bool)
    found_b = torch.zeros(len(b["labels"]), dtype=torch.bool)
    if len(found_a) == 0 or len(found_b) == 0:
        return found_a, found_b
    boxes_a, boxes_b = a["boxes"].double(), b["boxes"].double()
    close = (box_iou(boxes_a, boxes_b) >= iou) | ((boxes_a[:, None] - boxes_b[None]).abs().amax(-1) <= pixels)
    close &= a["labels"][:, None] == b["labels"][None]
    # Greedy in a's order (best score first): NMS leaves no two same-label boxes within the tolerance of each other,
    # so each detection has at most one candidate partner and greedy matching is exact.
    for i, row in enumerate(close):
        free = torch.nonzero(row & ~found_b)
        if len(free):
            found_b[free[0, 0]] = True
            found_a[i] = True
    return found_a, found_b


def _borderline(det: dict[str, Tensor], post: DetectionPostprocess, margin: float) -> Tensor:
    """bool [N]: detections whose presence a score change of `margin` could flip: within `margin` of the threshold,
    or of the last kept score when the per-image cap was reached (the cut could fall on either side of them)."""
    scores = det["scores"].float()
    edge = scores <= post.score_threshold + margin
    if len(scores) >= post.detections_per_image:
        edge |= scores <= scores.min() + margin
    return edge


def compare_runs(names: tuple[str, ...], reference: list[Tensor], other: list[Tensor], *,
                 post: DetectionPostprocess | None, input_size: tuple[int, int], thresholds: tuple[float, ...] = (),
                 score_margin: float = SCORE_MARGIN, iou: float = DETECTION_IOU) -> ParityReport:
    """Compare two runs of the same network on the same images.

    Args:
        names: output names; detection runs are (cls_logits [N, A, C], bbox_regression [N, A, 4], anchors [A, 4]).
        reference, other: the outputs of each run, in `names` order.
        post: the detector's post-processing (None for segmentation: raw outputs only).
        thresholds: score thresholds at which the detections are compared.
        score_margin: unmatched detections with a score within this of the threshold (or of the cap's cut) are
            borderline, not disagreements: a 1e-5 change of a 0.30001 score legitimately drops it.
        iou: the overlap that pairs two detections of the same label (see `match_detections`).
    """
    report = ParityReport()
    for name, ref, got in zip(names, reference, other):
        report.max_abs_diff[name] = float((ref.float() - got.float()).abs().max())
        report.scale[name] = float(ref.float().abs().max())
    if post is None:
        return report
    for threshold in thresholds:
        cut = DetectionPostprocess(**{**post.__dict__, "score_threshold": float(threshold)})
        row = {"threshold": threshold, "reference": 0, "other": 0, "matched": 0, "borderline": 0}
        identical = True
        for i in range(reference[0].shape[0]):
            a = cut(reference[0][i], reference[1][i], reference[2], input_size=input_size)
            b = cut(other[0][i], other[1][i], other[2], input_size=input_size)
            found_a, found_b = match_detections(a, b, iou=iou)
            edge_a, edge_b = _borderline(a, cut, score_margin), _borderline(b, cut, score_margin)
            row["reference"] += len(found_a)
            row["other"] += len(found_b)
            row["matched"] += int(found_a.sum())
            row["borderline"] += int((~found_a & edge_a).sum() + (~found_b & edge_b).sum())
            identical &= bool((found_a | edge_a).all() and (found_b | edge_b).all())
        report.detections.append({**row, "identical": identical})
    return report


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


def parity_check(model: nn.Module, session: Any, *, input_size: tuple[int, int], thresholds: tuple[float, ...] = (0.3,),
                 num_images: int = 3, seed: int = 0, images: Tensor | None = None) -> ParityReport:
    """Run the same images (default `parity_images`) through `model` (PyTorch, eval) and `session`; compare raw
    outputs (relative to their scale) and the detections that `DetectionPostprocess` keeps at each threshold (see
    `compare_runs`).

    Args:
        images: float [N, 3, H, W] RGB 0..255 at `input_size`, e.g. real images resized (default: generated).
    """
    images = parity_images(input_size, num_images, seed=seed) if images is None else images.float()
    model = model.eval()
    with torch.no_grad():
        if is_detector(model):
            raw, anchors = model.forward_raw(images)
            reference = [raw["cls_logits"], raw["bbox_regression"], anchors]
            names = DETECTION_OUTPUTS
        else:
            reference = [model(images)]
            names = SEGMENTATION_OUTPUTS
    other = [torch.from_numpy(np.asarray(o)) for o in session.run(list(names), {INPUT_NAME: images.numpy()})]
    post = postprocess_for(model) if is_detector(model) else None
    return compare_runs(names, reference, other, post=post, input_size=input_size, thresholds=thresholds)


def session_parity(reference: Any, other: Any, *, images: Tensor, post: DetectionPostprocess | None,
                   input_size: tuple[int, int], thresholds: tuple[float, ...] = (0.3,),
                   iou: float = DETECTION_IOU) -> ParityReport:
    """`compare_runs` for two onnxruntime sessions of the same network (fp32 vs int8) on float [N, 3, H, W] images."""
    names = DETECTION_OUTPUTS if post is not None else SEGMENTATION_OUTPUTS
    feed = {INPUT_NAME: images.float().numpy()}
    runs = [[torch.from_numpy(np.asarray(o)) for o in s.run(list(names), feed)] for s in (reference, other)]
    return compare_runs(names, runs[0], runs[1], post=post, input_size=input_size, thresholds=thresholds, iou=iou)
