"""SSD training targets and the multibox loss.

Matching (SSD section 2.2): every default box takes the ground-truth box it overlaps most if that IoU is >= 0.5, and
every ground-truth box also takes its best default box whatever the IoU, so no object goes unmatched.
Loss: smooth L1 on the coded offsets of matched boxes, plus classification with 3:1 hard negative mining
(softmax cross-entropy, or the TF reference's sigmoid variant), both divided by the number of matched boxes.
Options (for training from random weights, see the shapes demo config): a lower matching threshold or ATSS's
per-object threshold, the sigmoid focal loss over all default boxes instead of mining (RetinaNet), and a GIoU box
loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from mobilevision.models.anchors import BoxCoder


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
    return _keep_best_anchors(matched, iou)


def _keep_best_anchors(matched: Tensor, iou: Tensor) -> Tensor:
    """Force each ground truth onto its best default box (later boxes win ties, as in the reference
    implementations), so no object goes unmatched. `iou`: [G, A]; `matched`: [A], changed in place and returned."""
    best_anchor = iou.argmax(dim=1)  # [G]
    matched[best_anchor] = torch.arange(iou.shape[0], device=iou.device)
    return matched


def match_anchors_atss(
    gt_boxes: Tensor,
    anchors: Tensor,
    level_sizes: Sequence[int] | None = None,
    *,
    topk: int = 9,
    boxes_per_location: Sequence[int] | None = None,
) -> Tensor:
    """ATSS assignment (Zhang et al., CVPR 2020): an IoU threshold chosen per object from its own candidates.

    For every ground truth, the default boxes of the `topk` locations of each map whose centres lie nearest its
    centre are its candidates: `topk x boxes per location` boxes, as the reference implementation takes (several
    default boxes share each centre; taking only `topk` boxes would pick among equally near ones by tie-breaking);
    its threshold is the mean plus the standard deviation of their IoUs. Candidates at or above it whose
    centre lies inside the box are positives; a default box claimed by several objects takes the one it overlaps
    most, and every object keeps its best default box (as in `match_anchors`). A small object, whose best overlaps
    are low, gets a low threshold and still its few nearest boxes; a large one gets a high threshold and only its
    well-fitting boxes, instead of every box above one fixed IoU.

    Args:
        gt_boxes: [G, 4] x1y1x2y2; anchors: [A, 4] x1y1x2y2 (same coordinates), ordered by map.
        level_sizes: default boxes per map, summing to A (`Detector.forward_levels`); None treats all as one map.
        topk: candidate locations per object on each map.
        boxes_per_location: default boxes per location of each map (`DefaultBoxes.num_anchors`); None: one.
    Returns:
        int64 [A] in -1..G-1.
    """
    num_anchors = anchors.shape[0]
    if gt_boxes.numel() == 0:
        return torch.full((num_anchors,), -1, dtype=torch.int64, device=anchors.device)
    sizes = list(level_sizes) if level_sizes is not None else [num_anchors]
    if sum(sizes) != num_anchors:
        raise ValueError(f"level_sizes {sizes} sum to {sum(sizes)}, but there are {num_anchors} default boxes")
    per_location = list(boxes_per_location) if boxes_per_location is not None else [1] * len(sizes)
    if len(per_location) != len(sizes):
        raise ValueError(f"boxes_per_location {per_location} does not give one count per map ({len(sizes)} maps)")
    iou = box_iou(gt_boxes, anchors)  # [G, A]
    anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    distance = torch.cdist(gt_centres, anchor_centres)  # [G, A]
    candidates = []
    for start, size, n in zip(itertools.accumulate([0, *sizes[:-1]]), sizes, per_location):
        if size == 0:
            continue
        # The boxes of the k nearest locations: every box sharing a centre is equally near, so k x n of them.
        nearest = distance[:, start : start + size].topk(min(topk * n, size), dim=1, largest=False).indices
        candidates.append(nearest + start)
    candidates = torch.cat(candidates, dim=1)  # [G, K]
    candidate_iou = iou.gather(1, candidates)
    threshold = candidate_iou.mean(1, keepdim=True) + candidate_iou.std(1, keepdim=True).nan_to_num(0.0)
    centres = anchor_centres[candidates]  # [G, K, 2]
    inside = ((centres > gt_boxes[:, None, :2]) & (centres < gt_boxes[:, None, 2:])).all(-1)
    positive = (candidate_iou >= threshold) & inside & (candidate_iou > 0)
    claimed = torch.full_like(iou, -1.0).scatter(1, candidates, torch.where(positive, candidate_iou, -1.0))
    best_iou, matched = claimed.max(dim=0)
    matched = torch.where(best_iou > 0, matched, torch.full_like(matched, -1))
    return _keep_best_anchors(matched, iou)


class MultiBoxLoss(nn.Module):
    """The SSD loss, with the options that make training from random weights fast.

    Args:
        neg_pos_ratio: negatives kept per positive by hard negative mining (not with `focal_gamma`).
        iou_threshold: IoU a default box needs with a ground truth to be a positive (SSD: 0.5). Lower gives every
            object more positives (measured: docs/design-notes.md).
        assignment: "iou" (the fixed `iou_threshold`, SSD) or "atss" (a threshold per object from its nearest
            default boxes, `match_anchors_atss`; `iou_threshold` is then unused).
        atss_topk: ATSS candidate locations per object on each feature map (each with all its default boxes).
        boxes_per_location: default boxes per location of each feature map (`DefaultBoxes.num_anchors`), for ATSS;
            None counts one.
        classification: "softmax" (cross-entropy over C classes, 0 background) or "sigmoid" (independent binary
            cross-entropy per class on one-hot targets, background included, as the TF reference); None takes the
            detector's when a task binds the loss to it (`bind`); unbound, the focal loss's sigmoid or else softmax.
        focal_gamma: None for hard negative mining; a value (RetinaNet: 2) for the sigmoid focal loss over every
            default box and the C - 1 foreground classes instead (needs `classification="sigmoid"`).
        focal_alpha: the focal loss's weight of positives against negatives (RetinaNet: 0.25).
        box_loss: "smooth_l1" on the coded offsets (SSD) or "giou" (generalized IoU loss on the decoded boxes, which
            scores the overlap the COCO metric measures).
        box_weight: weight of the box term against the classification term.
        box_coder: the box coding (scales 10, 10, 5, 5 by default).
    """

    def __init__(
        self,
        *,
        neg_pos_ratio: float = 3.0,
        iou_threshold: float = 0.5,
        assignment: str = "iou",
        atss_topk: int = 9,
        boxes_per_location: Sequence[int] | None = None,
        classification: str | None = None,
        focal_gamma: float | None = None,
        focal_alpha: float = 0.25,
        box_loss: str = "smooth_l1",
        box_weight: float = 1.0,
        box_coder: BoxCoder | None = None,
    ) -> None:
        super().__init__()
        if box_loss not in ("smooth_l1", "giou"):
            raise ValueError(f"box_loss must be 'smooth_l1' or 'giou', got {box_loss!r}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if assignment not in ("iou", "atss"):
            raise ValueError(f"assignment must be 'iou' or 'atss', got {assignment!r}")
        if atss_topk < 1:
            raise ValueError(f"atss_topk must be >= 1, got {atss_topk}")
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold
        self.assignment = assignment
        self.atss_topk = atss_topk
        self.boxes_per_location = list(boxes_per_location) if boxes_per_location is not None else None
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.box_loss = box_loss
        self.box_weight = box_weight
        self.box_coder = box_coder or BoxCoder()
        # Unbound and unset: the scoring the other options imply (the focal loss is a sigmoid one).
        self.classification = "sigmoid" if focal_gamma is not None else "softmax"
        if classification is not None:
            self._set_classification(classification)

    def _set_classification(self, classification: str) -> None:
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {classification!r}")
        if self.focal_gamma is not None and classification != "sigmoid":
            raise ValueError(
                f"the focal loss scores classes with sigmoids: set classification 'sigmoid' (got "
                f"{classification!r}) or focal_gamma null"
            )
        self.classification = classification

    def bind(self, *, classification: str, boxes_per_location: Sequence[int]) -> MultiBoxLoss:
        """This loss fitted to a detector: its scoring (`Detector.classification`, which the loss must match) and
        default boxes per location (`DefaultBoxes.num_anchors`, for ATSS). Returns self.

        Raises:
            ValueError: the focal loss with softmax scoring.
        """
        self._set_classification(classification)
        self.boxes_per_location = list(boxes_per_location)
        return self

    def options(self) -> dict[str, Any]:
        """The configuration's plain values (what a config's `criterion.init_args` holds, for checkpoints)."""
        return {
            "neg_pos_ratio": self.neg_pos_ratio,
            "iou_threshold": self.iou_threshold,
            "assignment": self.assignment,
            "atss_topk": self.atss_topk,
            "focal_gamma": self.focal_gamma,
            "focal_alpha": self.focal_alpha,
            "box_loss": self.box_loss,
            "box_weight": self.box_weight,
        }

    def targets(
        self, targets: list[dict[str, Tensor]], anchors: Tensor, level_sizes: Sequence[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per default box class labels [B, A] (0 = background) and matched ground-truth boxes [B, A, 4] (input
        pixels; meaningless where the label is 0). `level_sizes`: default boxes per map (ATSS only)."""
        labels, boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"].to(anchors)
            if len(gt_boxes) == 0:  # a background-only image: every default box is a negative
                labels.append(torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device))
                boxes.append(anchors)
                continue
            if self.assignment == "atss":
                matched = match_anchors_atss(
                    gt_boxes, anchors, level_sizes, topk=self.atss_topk, boxes_per_location=self.boxes_per_location
                )
            else:
                matched = match_anchors(gt_boxes, anchors, iou_threshold=self.iou_threshold)
            index = matched.clamp(min=0)
            gt_labels = target["labels"].to(device=anchors.device, dtype=torch.int64)
            labels.append(torch.where(matched >= 0, gt_labels[index], 0))
            boxes.append(gt_boxes[index])
        return torch.stack(labels), torch.stack(boxes)

    def forward(
        self,
        outputs: dict[str, Tensor],
        anchors: Tensor,
        targets: list[dict[str, Tensor]],
        level_sizes: Sequence[int] | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms for a batch.

        Args:
            outputs: `cls_logits` [B, A, C] and `bbox_regression` [B, A, 4] from the head.
            anchors: [A, 4] default boxes in input pixels.
            targets: per image `boxes` [G, 4] in input pixels and `labels` [G] in 1..C-1.
            level_sizes: default boxes per feature map (`Detector.forward_levels`), for ATSS; None: one map.
        Returns:
            `loss` (the weighted sum), `loss_box`, `loss_cls` and `num_positives`, all scalars; both terms are
            divided by the number of positives.
        """
        cls_logits = outputs["cls_logits"].float()
        box_pred = outputs["bbox_regression"].float()
        with torch.no_grad():
            labels, matched_boxes = self.targets(targets, anchors, level_sizes)
        positive = labels > 0
        num_pos = positive.sum()
        normaliser = num_pos.clamp(min=1).float()
        loss_box = self._box_term(box_pred, matched_boxes, anchors, positive) / normaliser
        if self.focal_gamma is not None:
            one_hot = F.one_hot(labels, cls_logits.shape[-1])[..., 1:].to(cls_logits.dtype)
            loss_cls = (
                sigmoid_focal_loss(
                    cls_logits[..., 1:], one_hot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
                )
                / normaliser
            )
        else:
            loss_cls = self._mined_term(cls_logits, labels, positive) / normaliser
        return {
            "loss": self.box_weight * loss_box + loss_cls,
            "loss_box": loss_box,
            "loss_cls": loss_cls,
            "num_positives": num_pos,
        }

    def _box_term(self, box_pred: Tensor, matched_boxes: Tensor, anchors: Tensor, positive: Tensor) -> Tensor:
        pos_anchors = anchors.unsqueeze(0).expand_as(matched_boxes)[positive]
        if self.box_loss == "giou":
            decoded = self.box_coder.decode(box_pred[positive], pos_anchors)
            return generalized_box_iou_loss(decoded, matched_boxes[positive], reduction="sum")
        coded = self.box_coder.encode(matched_boxes[positive], pos_anchors)
        return F.smooth_l1_loss(box_pred[positive], coded, reduction="sum")

    def _mined_term(self, cls_logits: Tensor, labels: Tensor, positive: Tensor) -> Tensor:
        """Classification summed over the positives and the hardest negatives."""
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
        return per_anchor[positive | negative].sum()
