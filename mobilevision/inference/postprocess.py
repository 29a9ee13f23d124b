"""Post-processing shared by every backend: raw network outputs -> detections or a mask at the image's own size.

This is the documented post-processing step of the exported ONNX graph (which stops at the raw head outputs):
softmax (or sigmoid) over classes, keep (anchor, class) pairs above the score threshold, at most `topk_candidates` per
class, decode only the best `max_candidates` of them against the default boxes, clip, class-wise NMS, keep
`detections_per_image`, and scale from the network input to the image.

It returns the same detections as `Detector.postprocess` (per-class top-k, then threshold, then NMS): thresholding
first and taking the per-class top-k among the survivors selects the same pairs, and the candidate cap is exact
(see `DetectionPostprocess._nms_prefix`: NMS over a prefix of the ranking that keeps enough boxes keeps the same
boxes). It is faster because it decodes and suppresses only the candidates it needs: at threshold 0.01 an 81-class
SSDLite has ~16,000 (anchor, class) pairs after the per-class top-k, of which NMS usually needs the best 1,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import batched_nms, clip_boxes_to_image

from mobilevision.tasks.detection.anchors import BoxCoder


@dataclass(frozen=True)
class DetectionPostprocess:
    """Parameters of the detection post-processing (stored in ONNX metadata next to the graph)."""

    score_threshold: float = 0.3
    nms_threshold: float = 0.6
    topk_candidates: int = 200
    detections_per_image: int = 100
    max_candidates: int = 1000
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    classification: str = "softmax"  # or "sigmoid": how the detector was trained to turn logits into scores

    def __post_init__(self) -> None:
        if self.classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {self.classification!r}")

    def __call__(
        self,
        cls_logits: Tensor,
        bbox_regression: Tensor,
        anchors: Tensor,
        *,
        input_size: tuple[int, int],
        image_size: tuple[int, int] | None = None,
    ) -> dict[str, Tensor]:
        """One image.

        Args:
            cls_logits: [A, C] raw class scores (C counts the background, index 0).
            bbox_regression: [A, 4] box offsets.
            anchors: [A, 4] default boxes x1y1x2y2 in network-input pixels.
            input_size: (h, w) of the network input.
            image_size: (H, W) of the original image; boxes are scaled to it (None: stay in input pixels).

        Returns:
            `boxes` float32 [N, 4] x1y1x2y2 in image pixels, `scores` float32 [N], `labels` int64 [N] in 1..C-1,
            sorted by decreasing score.
        """
        logits = cls_logits.float()
        scores = (logits.sigmoid() if self.classification == "sigmoid" else logits.softmax(-1))[:, 1:]  # [A, C-1]
        num_anchors, num_fg = scores.shape
        above = scores > self.score_threshold
        if int(above.sum()) <= self.topk_candidates:
            # Few survivors (a 0.3 threshold on most frames): no class can exceed its top-k, take them directly.
            anchor_idx, class_idx = torch.nonzero(above, as_tuple=True)
            cand_scores = scores[anchor_idx, class_idx]
        else:
            # Many survivors (0.01, COCO evaluation: most of the A x (C-1) pairs): the per-class top-k first, one
            # partial sort per class row, then the threshold; the same pairs as threshold-then-top-k.
            k = min(self.topk_candidates, num_anchors)
            top_scores, top_anchor = scores.T.topk(k, dim=1)  # [C-1, k]
            keep = top_scores > self.score_threshold
            cand_scores, anchor_idx = top_scores[keep], top_anchor[keep]
            class_idx = torch.arange(num_fg, device=scores.device)[:, None].expand(-1, k)[keep]
        if cand_scores.numel() == 0:  # the common case on most frames: skip decoding and NMS altogether
            empty = cls_logits.new_zeros((0, 4), dtype=torch.float32)
            return {"boxes": empty, "scores": cand_scores, "labels": class_idx + 1}
        # One canonical order: score descending at a resolution of 2^-20 (about 1e-6), ties broken by (anchor,
        # class) position (row-major). Every later cut (the candidate cap, NMS, the per-image cap) follows it, so
        # scores that are equal up to float rounding (common on flat image regions) give the same detections on every
        # backend instead of an order set by 1e-8 noise.
        position = anchor_idx * num_fg + class_idx
        order = position.argsort()
        order = order[torch.round(cand_scores[order] * 2.0**20).argsort(descending=True, stable=True)]
        anchor_idx, class_idx, cand_scores = anchor_idx[order], class_idx[order], cand_scores[order]
        kept, boxes = self._nms_prefix(bbox_regression, anchors, anchor_idx, class_idx, input_size)
        boxes, cand_scores, labels = boxes[kept], cand_scores[kept], class_idx[kept] + 1
        if image_size is not None and tuple(image_size) != tuple(input_size):
            sy, sx = image_size[0] / input_size[0], image_size[1] / input_size[1]
            boxes = clip_boxes_to_image(boxes * boxes.new_tensor([sx, sy, sx, sy]), image_size)
        return {"boxes": boxes, "scores": cand_scores, "labels": labels}

    def _nms_prefix(self, bbox_regression: Tensor, anchors: Tensor, anchor_idx: Tensor, class_idx: Tensor,
                    input_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Class-wise NMS of the candidates (in rank order) up to `detections_per_image` kept, decoding only the
        best `max_candidates` first.

        Greedy NMS decides each box from the boxes ranked above it only, so when NMS over a prefix of the ranking
        keeps `detections_per_image` boxes, they are exactly the first ones NMS over all candidates keeps: the cap
        bounds the work without changing the detections. When the prefix keeps fewer, it grows fourfold and NMS runs
        again (rare: it takes more than `max_candidates` candidates suppressing one another).

        Returns:
            positions (into the candidates) of the kept boxes, best first, int64 [N]; decoded, clipped boxes of the
            candidates examined, float [M, 4], indexable by those positions.
        """
        total = anchor_idx.numel()
        limit = min(self.max_candidates, total)
        while True:
            boxes = BoxCoder(self.box_coder_weights).decode(bbox_regression[anchor_idx[:limit]].float(),
                                                            anchors[anchor_idx[:limit]])
            boxes = clip_boxes_to_image(boxes, input_size)
            # NMS visits boxes by the rank in the canonical order, not by raw score (which may tie).
            rank = torch.arange(limit, 0, -1, dtype=torch.float32, device=boxes.device)
            kept = batched_nms(boxes, rank, class_idx[:limit], self.nms_threshold)[: self.detections_per_image]
            if kept.numel() >= self.detections_per_image or limit == total:
                return kept, boxes
            limit = min(4 * limit, total)


def segmentation_mask(logits: Tensor, image_size: tuple[int, int]) -> Tensor:
    """logits [C, h, w] -> class indices [H, W] at `image_size`, uint8 when C <= 256 else int64.

    Logits are upsampled (bilinear) before the argmax: smoother borders than resizing the argmax.
    """
    if tuple(logits.shape[-2:]) != tuple(image_size):
        logits = F.interpolate(logits[None].float(), size=tuple(image_size), mode="bilinear", align_corners=False)[0]
    mask = logits.argmax(0)
    return mask.to(torch.uint8) if logits.shape[0] <= 256 else mask
