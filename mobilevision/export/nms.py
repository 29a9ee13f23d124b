"""NMS inside the exported graph (`export --nms`): image in, final detections out.

`NmsDetector(detector)` maps images float32 [1, 3, H, W] (RGB 0..255) to
- `boxes` float32 [1, K, 4] x1y1x2y2 in network-input pixels (rows past `num_detections` are zero),
- `scores` float32 [1, K], `labels` int64 [1, K] in 1..C-1 (0 in the padding),
- `num_detections` int64 [1],
with K = the detector's `detections_per_image`. It is `DetectionPostprocess` (softmax or sigmoid, threshold,
per-class top-k, decode, clip, class-wise NMS) over a fixed prefix of the score ranking: the best `prefix`
(anchor, class) pairs, where the torch post-processor starts at `max_candidates` and widens while NMS keeps too few
(a loop an exported graph does not have). The two agree whenever the prefix holds every candidate above the
threshold or NMS keeps K boxes from it (`tests/export/test_nms.py`); scores equal to float rounding may order
differently (the torch side breaks such ties by position at 2^-20). Scaling boxes to the original image stays with
the caller (it knows the image size).

Exported to ONNX with the legacy exporter, class-wise NMS becomes one `NonMaxSuppression` node (torchvision's
`nms` on boxes shifted apart by class, the coordinate trick of `batched_nms`), the prefix a `TopK`. LiteRT and
ExecuTorch exports have no NMS operator on their path: `StaticNmsDetector` writes the same suppression in plain
tensor ops of static shapes (`export --nms --format tflite|executorch`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou, clip_boxes_to_image, nms

from mobilevision.checkpoint import ModelMeta
from mobilevision.models.anchors import BoxCoder
from mobilevision.tasks.detection.inference import postprocess_for

NMS_OUTPUTS = ("boxes", "scores", "labels", "num_detections")


class NmsDetector(nn.Module):
    """A detector with its post-processing in the graph (batch 1); see the module docstring for the interface."""

    def __init__(self, detector: nn.Module, *, score_threshold: float = 0.3, prefix: int = 1000) -> None:
        super().__init__()
        self.detector = detector
        self.post = postprocess_for(detector, score_threshold=score_threshold)
        self.prefix = int(prefix)
        self.coder = BoxCoder(self.post.box_coder_weights)

    def candidates(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The best `prefix` (anchor, class) pairs, best first: scores [P], decoded boxes clipped to the input [P, 4],
        classes [P] (0-based foreground), and whether each pair passes the threshold and its class's top-k [P]."""
        outputs, anchors = self.detector.forward_raw(images)  # type: ignore[operator]
        logits, regression = outputs["cls_logits"][0].float(), outputs["bbox_regression"][0]
        probs = logits.sigmoid() if self.post.classification == "sigmoid" else logits.softmax(-1)
        flat = probs[:, 1:].reshape(-1)  # [A * (C-1)], position = anchor * (C-1) + class
        num_fg = probs.shape[1] - 1
        scores, positions = flat.topk(min(self.prefix, flat.shape[0]))
        classes = positions % num_fg
        # Rank of each pair within its class (the pairs are in score order): the per-class top-k.
        one_hot = (classes[:, None] == torch.arange(num_fg, device=classes.device)[None]).to(torch.int32)
        class_rank = ((one_hot.cumsum(0) - 1) * one_hot).sum(1)
        passing = (scores > self.post.score_threshold) & (class_rank < self.post.topk_candidates)
        anchor_idx = torch.div(positions, num_fg, rounding_mode="floor")
        boxes = self.coder.decode(regression[anchor_idx].float(), anchors[anchor_idx])
        return scores, clip_boxes_to_image(boxes, images.shape[-2:]), classes, passing

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        scores, boxes, classes, keep = self.candidates(images)
        scores, boxes, classes = scores[keep], boxes[keep], classes[keep]
        # Class-wise NMS as one NonMaxSuppression: boxes of different classes shifted apart by more than the image
        # (they are clipped to it). Not `batched_nms`: its empty-input branch is baked into the trace when the
        # example input has no candidate, and its max() over boxes fails on an empty set.
        shift = (classes.to(boxes.dtype) * float(max(images.shape[-2:]) + 1))[:, None]
        kept = nms(boxes + shift, scores, self.post.nms_threshold)[: self.post.detections_per_image]
        return _pad(boxes[kept], scores[kept], classes[kept] + 1, self.post.detections_per_image)


class StaticNmsDetector(NmsDetector):
    """`NmsDetector` in plain tensor ops of static shapes, for runtimes with no NMS operator in their export path
    (LiteRT through litert-torch, ExecuTorch): the same interface and the same detections.

    Greedy NMS over the `prefix` candidates, best first, is the fixed point of `keep_i = passing_i and no kept
    j < i of the same class overlaps i by more than the IoU threshold`. Iterating that rule from `keep = passing`
    makes candidate i final after i iterations (it depends on earlier ones only), so `prefix` iterations of one
    [P] x [P, P] product give exactly greedy NMS, with no data-dependent shape or loop in the graph. The default
    prefix is smaller than the ONNX graph's, since its iterations are unrolled: 200, the first prefix our own
    post-processing examines (`DetectionPostprocess.max_candidates`, twice the detections kept).
    """

    def __init__(self, detector: nn.Module, *, score_threshold: float = 0.3, prefix: int = 200) -> None:
        super().__init__(detector, score_threshold=score_threshold, prefix=prefix)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        scores, boxes, classes, passing = self.candidates(images)
        count = scores.shape[0]
        overlap = box_iou(boxes, boxes) > self.post.nms_threshold
        earlier = torch.ones(count, count, dtype=torch.bool, device=boxes.device).triu(1)  # [j, i]: j ranked above i
        suppresses = (overlap & earlier & (classes[:, None] == classes[None, :])).float()
        valid = passing.float()
        keep = valid
        for _ in range(count):
            keep = valid * ((keep[None] @ suppresses)[0] < 0.5).float()
        size = self.post.detections_per_image
        ranked = torch.where(keep > 0.5, scores, torch.full_like(scores, -1.0))
        top, order = ranked.topk(min(size, count))
        found = (top > -0.5).float()
        boxes = boxes[order] * found[:, None]
        labels = ((classes[order] + 1) * found.to(classes.dtype)).to(torch.int64)
        scores = top * found
        pad = size - order.shape[0]
        if pad > 0:  # fewer candidates than the cap: pad to the fixed count
            boxes = torch.cat([boxes, boxes.new_zeros(pad, 4)])
            scores = torch.cat([scores, scores.new_zeros(pad)])
            labels = torch.cat([labels, labels.new_zeros(pad)])
        return boxes[None], scores[None], labels[None], found.sum().to(torch.int64).reshape(1)


def _pad(boxes: Tensor, scores: Tensor, labels: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """boxes [N, 4], scores [N], labels [N] (N <= size) -> [1, size, 4], [1, size], [1, size] zero-padded, and N
    as int64 [1]."""
    count = torch.ones_like(scores, dtype=torch.int64).sum().reshape(1)  # traced as data, not a constant
    boxes = torch.cat([boxes, boxes.new_zeros(size, 4)])[:size]
    scores = torch.cat([scores, scores.new_zeros(size)])[:size]
    labels = torch.cat([labels, labels.new_zeros(size)])[:size]
    return boxes[None], scores[None], labels[None], count


def export_nms_onnx(
    model: nn.Module, input_size: tuple[int, int], *, score_threshold: float = 0.3, prefix: int = 1000, opset: int = 17
) -> bytes:
    """ONNX bytes of `NmsDetector(model)` at the fixed `input_size` (h, w), batch 1, outputs `NMS_OUTPUTS`."""
    import io
    import warnings

    wrapped = NmsDetector(model.eval(), score_threshold=score_threshold, prefix=prefix).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (torch.zeros(1, 3, *input_size),),
            buffer,
            opset_version=opset,
            input_names=["images"],
            output_names=list(NMS_OUTPUTS),
            dynamo=False,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def export_nms_mobile(
    model: nn.Module,
    path: Path,
    meta: ModelMeta,
    *,
    fmt: str,
    input_size: tuple[int, int],
    score_threshold: float = 0.3,
) -> Path:
    """Write `StaticNmsDetector(model)` as a `fmt` file ("tflite" or "executorch", fp32) at `path`, with its
    metadata naming the `NMS_OUTPUTS` and the NMS settings (`export_mobile`)."""
    from mobilevision.export.mobile import OUTPUTS_KEY, export_mobile

    wrapped = StaticNmsDetector(model, score_threshold=score_threshold)
    extra = {
        OUTPUTS_KEY: list(NMS_OUTPUTS),
        "mobilevision.nms": {"score_threshold": score_threshold, "prefix": wrapped.prefix},
    }
    return export_mobile(
        model,
        path,
        meta,
        fmt=fmt,
        input_size=input_size,
        extra=extra,
        surface=wrapped,
    )


def nms_parity(
    model: nn.Module, session: object, images: Tensor, *, score_threshold: float = 0.3
) -> tuple[int, int, list[str]]:
    """Detections of the NMS graph (`session`, onnxruntime) against our post-processing of the torch model's raw
    outputs, image by image: (matched, total of both sides, one line per image). Pairs: same label, IoU >= 0.8 or
    every coordinate within the box tolerance (`match_detections`)."""
    from mobilevision.tasks.detection.parity import match_detections

    post = postprocess_for(model, score_threshold=score_threshold)
    size = tuple(images.shape[-2:])
    matched = total = 0
    lines = []
    for index, image in enumerate(images.split(1)):
        with torch.no_grad():
            outputs, anchors = model.forward_raw(image)  # type: ignore[operator]
        ref = post(outputs["cls_logits"][0], outputs["bbox_regression"][0], anchors, input_size=size)
        boxes, scores, labels, count = session.run(list(NMS_OUTPUTS), {"images": image.numpy()})  # type: ignore[attr-defined]
        n = int(count[0])
        got = {"boxes": torch.as_tensor(boxes[0, :n]), "labels": torch.as_tensor(labels[0, :n]).long()}
        a, b = match_detections(ref, got)
        matched, total = matched + int(a.sum()) + int(b.sum()), total + len(a) + len(b)
        lines.append(f"image {index}: torch {len(a)} detections, graph {n}, paired {int(a.sum())}")
    return matched, total, lines


def check_nms_graph(model: nn.Module, session: object, images: Tensor, *, score_threshold: float, output: Path) -> int:
    """Print `nms_parity` of the NMS graph at `output` (run by `session`) against our post-processing; the exit
    code: 0 when every detection pairs, 1 (and a line on stderr) when not."""
    import sys

    matched, total, lines = nms_parity(model, session, images, score_threshold=score_threshold)
    size = tuple(images.shape[-2:])
    print(f"wrote {output} (NMS in the graph, score threshold {score_threshold:g}, input {size[0]}x{size[1]}, batch 1)")
    print("\n".join(lines))
    if matched != total:
        print(f"mobilevision export: NMS graph parity FAILED ({matched} of {total} detections paired)", file=sys.stderr)
        return 1
    print(f"NMS graph parity OK ({total // 2} detections, all paired with our post-processing)")
    return 0
