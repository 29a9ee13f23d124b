"""How two runs of the same detector compare: detections paired one to one (the task table's `compare` hook, used
by `mobilevision export`'s parity check and the int8 check)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mobilevision.models.postprocess import DetectionPostprocess

# Two detections are the same when labels are equal and the boxes overlap with IoU >= this (or every coordinate is
# within BOX_PIXEL_TOLERANCE px, for tiny boxes whose IoU moves fast).
DETECTION_IOU = 0.99
BOX_PIXEL_TOLERANCE = 0.5
SCORE_MARGIN = 1e-3


def match_detections(
    a: dict[str, Tensor], b: dict[str, Tensor], *, iou: float = DETECTION_IOU, pixels: float = BOX_PIXEL_TOLERANCE
) -> tuple[Tensor, Tensor]:
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


def compare(
    source: Any,
    reference: list[Tensor],
    other: list[Tensor],
    *,
    input_size: tuple[int, int],
    thresholds: tuple[float, ...] = (),
    score_margin: float = SCORE_MARGIN,
    iou: float = DETECTION_IOU,
) -> list[dict[str, Any]]:
    """Compare the detections of two runs of the same detector on the same images, per threshold.

    Args:
        source: the torch Detector, or an exported file's metadata: where the post-processing parameters come from.
        reference, other: each run's (cls_logits [N, A, C], bbox_regression [N, A, 4], anchors [A, 4]).
        thresholds: score thresholds at which the detections are compared.
        score_margin: unmatched detections with a score within this of the threshold (or of the cap's cut) are
            borderline, not disagreements: a 1e-5 change of a 0.30001 score legitimately drops it.
        iou: the overlap that pairs two detections of the same label (see `match_detections`).

    Returns:
        per threshold: `threshold`, detection counts `reference` and `other`, `matched` pairs, unmatched
        `borderline` ones, and `identical` (every detection matched or borderline).
    """
    from mobilevision.tasks.detection.inference import postprocess_for, postprocess_from_metadata

    post = postprocess_from_metadata(source) if isinstance(source, dict) else postprocess_for(source)
    if post is None:
        raise ValueError("no post-processing parameters to compare detections with")
    rows = []
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
        rows.append({**row, "identical": identical})
    return rows
