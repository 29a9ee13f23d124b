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


@dataclass
class ParityReport:
    """Raw-output differences and detection agreement between PyTorch and onnxruntime."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    detections: list[dict[str, Any]] = field(default_factory=list)  # per threshold: counts and agreement

    @property
    def max_diff(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0

    @property
    def detections_identical(self) -> bool:
        return all(d["identical"] for d in self.detections)

    def ok(self, tolerance: float = 1e-4) -> bool:
        return self.max_diff <= tolerance and self.detections_identical

    def format(self) -> str:
        lines = ["parity check, PyTorch vs onnxruntime:"]
        lines += [f"  max |diff| {name}: {value:.3g}" for name, value in self.max_abs_diff.items()]
        for d in self.detections:
            lines.append(f"  detections above {d['threshold']}: torch {d['torch']}, onnxruntime {d['onnxruntime']}, "
                         f"{'identical' if d['identical'] else 'DIFFERENT'}")
        return "\n".join(lines)


def _same_detections(a: dict[str, Tensor], b: dict[str, Tensor], *, box_tol: float = 1e-2) -> bool:
    """The same set of (label, box, score), in any order: scores equal to 1e-8 may list in either order."""
    if a["labels"].shape != b["labels"].shape:
        return False

    def canonical(d: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        key = torch.cat([d["labels"][:, None].double(), torch.round(d["boxes"].double() / box_tol)], 1)
        order = torch.from_numpy(np.lexsort(key.numpy().T[::-1].copy()))
        return d["labels"][order], d["boxes"][order], d["scores"][order]

    la, ba, sa = canonical(a)
    lb, bb, sb = canonical(b)
    return bool(torch.equal(la, lb) and torch.allclose(ba, bb, atol=box_tol, rtol=0)
                and torch.allclose(sa, sb, atol=1e-4, rtol=0))


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
    outputs and the detections that `DetectionPostprocess` keeps at each threshold (the same set of labels, boxes
    within 1e-2 px and scores within 1e-4).

    Args:
        images: float [N, 3, H, W] RGB 0..255 at `input_size`, e.g. real images resized (default: generated).
    """
    images = parity_images(input_size, num_images, seed=seed) if images is None else images.float()
    num_images = images.shape[0]
    model = model.eval()
    with torch.no_grad():
        if is_detector(model):
            raw, anchors = model.forward_raw(images)
            reference = [raw["cls_logits"], raw["bbox_regression"], anchors]
            names = DETECTION_OUTPUTS
        else:
            reference = [model(images)]
            names = SEGMENTATION_OUTPUTS
    ort_out = session.run(list(names), {INPUT_NAME: images.numpy()})
    report = ParityReport()
    for name, ref, got in zip(names, reference, ort_out):
        report.max_abs_diff[name] = float((ref - torch.from_numpy(np.asarray(got))).abs().max())
    if is_detector(model):
        ort_cls, ort_box, ort_anchors = (torch.from_numpy(np.asarray(o)) for o in ort_out)
        for threshold in thresholds:
            post = postprocess_for(model, score_threshold=threshold)
            counts = {"torch": 0, "onnxruntime": 0}
            identical = True
            for i in range(num_images):
                a = post(reference[0][i], reference[1][i], reference[2], input_size=input_size)
                b = post(ort_cls[i], ort_box[i], ort_anchors, input_size=input_size)
                counts["torch"] += len(a["labels"])
                counts["onnxruntime"] += len(b["labels"])
                identical &= _same_detections(a, b)
            report.detections.append({"threshold": threshold, **counts, "identical": identical})
    return report
