"""SSD training targets and the multibox loss.

Matching (SSD section 2.2): every default box takes the ground-truth box it overlaps most if that IoU is >= 0.5, and
every ground-truth box also takes its best default box whatever the IoU, so no object goes unmatched.
Loss: smooth L1 on the coded offsets of matched boxes, plus classification with 3:1 hard negative mining
(softmax cross-entropy, or the TF reference's sigmoid variant), both divided by the number of matched boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_iou

from mobilevision.tasks.detection.anchors import BoxCoder


def match_anchors(gt_boxes: Tensor, anchors: Tensor, *, iou_threshold: float = 0.5) -> Tensor:
    """Index of the matched ground-truth box for each default box, -1 for background.

    Args:
        gt_boxes: [G, 4] x1y1x2y2; anchors: [A, 4] x1y1x2y2 (same coordinates).
    Returns:
        int64 [A] in -1..G-1.
    """
    if gt_boxes.numel() == 0:
        return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    iou = box_iou(gt_boxes, anchors)  # [G, A]
    best_iou, matched = iou.max(dim=0)
    matched = torch.where(best_iou >= iou_threshold, matched, torch.full_like(matched, -1))
    # Force each ground truth onto its best default box (later boxes win ties, as in the reference implementations).
    best_anchor = iou.argmax(dim=1)  # [G]
    matched[best_anchor] = torch.arange(gt_boxes.shape[0], device=anchors.device)
    return matched


class MultiBoxLoss(nn.Module):
    """The SSD loss.

    Args:
        neg_pos_ratio: negatives kept per positive by hard negative mining.
        iou_threshold: IoU a default box needs with a ground truth to be a positive.
        classification: "softmax" (cross-entropy over C classes, 0 background) or "sigmoid" (independent binary
            cross-entropy per class on one-hot targets, background included, as the TF reference).
        box_coder: the box coding (scales 10, 10, 5, 5 by default).
    """

    def __init__(
        self,
        *,
        neg_pos_ratio: float = 3.0,
        iou_threshold: float = 0.5,
        classification: str = "softmax",
        box_coder: BoxCoder | None = None,
    ) -> None:
        super().__init__()
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {classification!r}")
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold
        self.classification = classification
        self.box_coder = box_coder or BoxCoder()

    def targets(self, targets: list[dict[str, Tensor]], anchors: Tensor) -> tuple[Tensor, Tensor]:
        """Per default box class labels [B, A] (0 = background) and coded box targets [B, A, 4]."""
        labels, boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"].to(anchors)
            if len(gt_boxes) == 0:  # a background-only image: every default box is a negative
                labels.append(torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device))
                boxes.append(torch.zeros_like(anchors))
                continue
            matched = match_anchors(gt_boxes, anchors, iou_threshold=self.iou_threshold)
            index = matched.clamp(min=0)
            gt_labels = target["labels"].to(device=anchors.device, dtype=torch.int64)
            labels.append(torch.where(matched >= 0, gt_labels[index], 0))
            matched_boxes = gt_boxes[index]
            boxes.append(self.box_coder.encode(matched_boxes, anchors))
        return torch.stack(labels), torch.stack(boxes)

    def forward(
        self, outputs: dict[str, Tensor], anchors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Loss terms for a batch.

        Args:
            outputs: `cls_logits` [B, A, C] and `bbox_regression` [B, A, 4] from the head.
            anchors: [A, 4] default boxes in input pixels.
            targets: per image `boxes` [G, 4] in input pixels and `labels` [G] in 1..C-1.
        Returns:
            `loss` (the sum), `loss_box`, `loss_cls` and `num_positives`, all scalars.
        """
        cls_logits = outputs["cls_logits"].float()
        box_pred = outputs["bbox_regression"].float()
        with torch.no_grad():
            labels, box_targets = self.targets(targets, anchors)
        positive = labels > 0
        num_pos = positive.sum()
        normaliser = num_pos.clamp(min=1).float()

        loss_box = F.smooth_l1_loss(box_pred[positive], box_targets[positive], reduction="sum") / normaliser

        if self.classification == "softmax":
            per_anchor = F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none")
        else:
            one_hot = F.one_hot(labels, cls_logits.shape[-1]).to(cls_logits.dtype)
            per_anchor = F.binary_cross_entropy_with_logits(cls_logits, one_hot, reduction="none").sum(-1).flatten()
        per_anchor = per_anchor.view_as(labels)

        # Hard negative mining: per image, the negatives with the highest loss, neg_pos_ratio per positive (at least
        # one positive's worth, so background-only images still teach the background class).
        with torch.no_grad():
            negative_loss = per_anchor.detach().masked_fill(positive, float("-inf"))
            order = negative_loss.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each anchor
            num_neg = (self.neg_pos_ratio * positive.sum(1, keepdim=True).clamp(min=1)).long()
            negative = order < num_neg
            negative &= ~positive
        loss_cls = per_anchor[positive | negative].sum() / normaliser
        return {"loss": loss_box + loss_cls, "loss_box": loss_box, "loss_cls": loss_cls, "num_positives": num_pos}
