"""Post-processing shared by every backend: raw network outputs -> detections or a mask at the image's own size.

This is the documented post-processing step of the exported ONNX graph (which stops at the raw head outputs):
softmax (or sigmoid) over classes, then the best `max_candidates` (anchor, class) pairs overall that pass the score
threshold and are among their class's best `topk_candidates`; only those boxes are decoded against the default
boxes, clipped and suppressed (class-wise NMS); keep `detections_per_image`, scale from the network input to the
image. If NMS leaves fewer than `detections_per_image` of the prefix and more candidates exist, the prefix widens
fourfold and NMS runs again.

It returns the same detections as `Detector.postprocess` (per-class top-k, then threshold, then NMS over everything):
see `DetectionPostprocess._prefix` for why the prefix changes nothing. It is faster because it never sorts or decodes
what the answer cannot contain: at threshold 0.01 an 81-class SSDLite has ~100,000 pairs above the threshold
(~16,000 after the per-class top-k) and NMS usually needs the best few hundred.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from mobilevision.models.anchors import BoxCoder


@dataclass(frozen=True)
class DetectionPostprocess:
    """Parameters of the detection post-processing (stored in ONNX metadata next to the graph)."""

    score_threshold: float = 0.3
    nms_threshold: float = 0.6
    topk_candidates: int = 200
    detections_per_image: int = 100
    # The first prefix of the ranking NMS examines (widened fourfold while it keeps too few): twice the detections
    # kept suffices on the busy images of `benchmark predictor`; it bounds the work, never the result.
    max_candidates: int = 200
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
        num_fg = scores.shape[1]
        flat = scores.reshape(-1)  # position p = anchor * (C-1) + class: row-major
        # When few pairs pass the threshold, rank those alone: the pairs below can never be detections, and near-
        # equal scores below it (an untrained or unsure model) otherwise make a tie bucket of every pair at the
        # cut, a top-k and a sort over all of them (~15 ms on the joint model's 2892 x 80 pairs). The positions of
        # the passing pairs are increasing, so the tie-break by position is unchanged. When most pairs pass, the
        # gather would cost more than it saves: rank them all.
        above = flat > self.score_threshold
        subset: Tensor | None = None
        if int(above.sum()) * 4 < flat.numel():
            subset = above.nonzero().squeeze(1)
            flat = flat[subset]
        limit = min(self.max_candidates, flat.numel())
        while True:
            kept, boxes, positions, cand_scores, complete = self._prefix(
                flat, subset, limit, bbox_regression, anchors, num_fg, input_size
            )
            if kept.numel() >= self.detections_per_image or complete:
                break
            limit = min(4 * limit, flat.numel())  # NMS suppressed most of the prefix: widen it
        labels = positions[kept] % num_fg + 1
        boxes, cand_scores = boxes[kept], cand_scores[kept]
        if image_size is not None and tuple(image_size) != tuple(input_size):
            sy, sx = image_size[0] / input_size[0], image_size[1] / input_size[1]
            boxes = clip_boxes_to_image(boxes * boxes.new_tensor([sx, sy, sx, sy]), image_size)
        return {"boxes": boxes, "scores": cand_scores, "labels": labels}

    def _prefix(
        self,
        flat: Tensor,
        flat_positions: Tensor | None,
        limit: int,
        bbox_regression: Tensor,
        anchors: Tensor,
        num_fg: int,
        input_size: tuple[int, int],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
        """Class-wise NMS over the best `limit` (anchor, class) pairs of the canonical ranking that pass the
        threshold and their class's top-k.

        The canonical ranking: score descending at a resolution of 2^-20 (about 1e-6), ties broken by position.
        Every cut follows it, so scores equal up to float rounding (common on flat image regions) give the same
        detections on every backend instead of an order set by 1e-8 noise. A pair's rank within its class is the
        same in any prefix of the ranking as in the whole, so the per-class top-k is exact on the prefix; and greedy
        NMS decides each box from the boxes ranked above it only, so when the prefix keeps `detections_per_image`
        boxes they are the ones NMS over every candidate would keep. The prefix bounds the work (at 0.01 an 81-class
        SSDLite has ~100,000 pairs above the threshold) without changing the detections.

        Args:
            flat: foreground scores, row-major (anchor, class): all [A * (C-1)] pairs, or those above the threshold.
            flat_positions: with the latter, their positions among all pairs (increasing); None with the former.

        Returns:
            kept positions into the candidates, best first, int64 [N]; the candidates' decoded clipped boxes
            float [M, 4], flat positions int64 [M] and scores float [M]; whether the prefix held every candidate.
        """
        # One more than the prefix: best first; order among near-ties fixed below.
        top_scores, top_pos = flat.topk(min(limit + 1, flat.numel()))
        if limit < flat.numel():
            rounded = torch.round(top_scores[-2:] * 2.0**20)
            if rounded[0] == rounded[1]:
                # A bucket of equal rounded scores straddles the cut: take all of it, so the tie-break by position
                # sees every member (counting it costs a pass over all pairs, so only when the cut splits one).
                last = float(rounded[0])
                bucket = int((flat >= (last - 0.5) / 2.0**20).sum()) if last > 0 else flat.numel()
                top_scores, top_pos = flat.topk(bucket)
            else:
                top_scores, top_pos = top_scores[:limit], top_pos[:limit]
        complete = top_scores.numel() == flat.numel() or bool(top_scores[-1] <= self.score_threshold)
        passing = top_scores > self.score_threshold
        top_scores, top_pos = top_scores[passing], top_pos[passing]
        if flat_positions is not None:
            top_pos = flat_positions[top_pos]
        order = top_pos.argsort()
        order = order[torch.round(top_scores[order] * 2.0**20).argsort(descending=True, stable=True)]
        top_scores, top_pos = top_scores[order], top_pos[order]
        classes = top_pos % num_fg
        if top_pos.numel() > self.topk_candidates:
            top_scores, top_pos, classes = (
                t[_within_class_rank(classes) < self.topk_candidates] for t in (top_scores, top_pos, classes)
            )
        anchor_idx = torch.div(top_pos, num_fg, rounding_mode="floor")
        boxes = BoxCoder(self.box_coder_weights).decode(bbox_regression[anchor_idx].float(), anchors[anchor_idx])
        boxes = clip_boxes_to_image(boxes, input_size)
        # NMS visits boxes by the rank in the canonical order, not by raw score (which may tie).
        rank = torch.arange(top_pos.numel(), 0, -1, dtype=torch.float32, device=boxes.device)
        kept = batched_nms(boxes, rank, classes, self.nms_threshold)[: self.detections_per_image]
        return kept, boxes, top_pos, top_scores, complete


def _within_class_rank(classes: Tensor) -> Tensor:
    """int64 [N]: how many earlier entries share each entry's class (entries in rank order)."""
    order = classes.argsort(stable=True)  # grouped by class, rank order kept within each class
    sorted_classes = classes[order]
    counts = torch.bincount(sorted_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=classes.device) - starts[sorted_classes]
    return rank
