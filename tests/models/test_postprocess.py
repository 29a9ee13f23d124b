from __future__ import annotations

import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from mobilevision.models.anchors import BoxCoder
from mobilevision.models.postprocess import DetectionPostprocess
from mobilevision.tasks.segmentation.inference import segmentation_mask
from tests.inference.models_for_tests import small_detector


def _reference(model, cls_logits, box_reg, anchors, size):  # noqa: ANN001, ANN202
    """The plain post-processing the prefix search must equal: per-class top-k of all anchors, then the threshold,
    then class-wise NMS over every candidate, then the cap."""
    boxes = clip_boxes_to_image(BoxCoder().decode(box_reg, anchors), size)
    probabilities = cls_logits.sigmoid() if model.classification == "sigmoid" else cls_logits.softmax(-1)
    fg = probabilities[:, 1:].T  # [C-1, A]
    k = min(model.topk_candidates, fg.shape[1])
    top_scores, top_idx = fg.topk(k, dim=1)
    keep = top_scores > model.score_threshold
    labels = torch.arange(1, fg.shape[0] + 1).unsqueeze(1).expand(-1, k)[keep]
    scores, boxes = top_scores[keep], boxes[top_idx[keep]]
    kept = batched_nms(boxes, scores, labels, model.nms_threshold)[: model.detections_per_image]
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def _sorted(det: dict) -> tuple[torch.Tensor, torch.Tensor]:
    key = det["labels"].double() * 10 - det["scores"].double()
    order = key.argsort()
    return det["labels"][order], det["boxes"][order]


def test_same_detections_as_the_plain_postprocessing_even_when_top_k_binds() -> None:
    model = small_detector(num_classes=5)
    torch.manual_seed(0)
    anchors = torch.rand(3000, 2) * 200
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(3000, 2) * 60], 1)
    cls_logits = torch.randn(3000, 5) * 3
    cls_logits[:, 1] += 3  # class 1: far more than top-k candidates above the threshold
    box_reg = torch.randn(3000, 4)
    for threshold, topk in [(0.3, 200), (0.05, 50), (0.9, 200)]:
        model.score_threshold, model.topk_candidates = threshold, topk
        post = DetectionPostprocess(
            score_threshold=threshold,
            nms_threshold=model.nms_threshold,
            topk_candidates=topk,
            detections_per_image=model.detections_per_image,
            max_candidates=100_000,
        )
        ours = post(cls_logits, box_reg, anchors, input_size=(256, 256))
        ref = _reference(model, cls_logits, box_reg, anchors, (256, 256))
        labels_a, boxes_a = _sorted(ours)
        labels_b, boxes_b = _sorted(ref)
        assert torch.equal(labels_a, labels_b), threshold
        assert torch.allclose(boxes_a, boxes_b, atol=1e-4)


def test_candidates_are_bounded_and_boxes_scaled() -> None:
    anchors = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(5000, 1) + torch.arange(5000.0)[:, None] % 100
    cls_logits = torch.zeros(5000, 3)
    cls_logits[:, 1] = 10.0
    post = DetectionPostprocess(score_threshold=0.3, max_candidates=300, detections_per_image=1000)
    out = post(cls_logits, torch.zeros(5000, 4), anchors, input_size=(200, 200), image_size=(400, 100))
    assert 0 < len(out["boxes"]) <= 300
    assert out["boxes"][:, 0::2].max() <= 100 and out["boxes"][:, 1::2].max() <= 400
    assert out["boxes"][:, 1::2].max() > 200  # y scaled by 2


def test_segmentation_mask_resizes_logits() -> None:
    logits = torch.zeros(3, 4, 4)
    logits[2, :, 2:] = 5.0
    mask = segmentation_mask(logits, (8, 16))
    assert mask.shape == (8, 16) and mask.dtype == torch.uint8
    assert (mask[:, :6] == 0).all() and (mask[:, 10:] == 2).all()


def test_sigmoid_classification_matches_the_detector() -> None:
    from mobilevision.tasks.detection.inference import postprocess_for

    model = small_detector(num_classes=4)
    model.classification = "sigmoid"
    torch.manual_seed(1)
    anchors = torch.rand(500, 2) * 100
    anchors = torch.cat([anchors, anchors + 10], 1)
    cls_logits, box_reg = torch.randn(500, 4), torch.randn(500, 4) * 0.1
    model.score_threshold = 0.6
    post = postprocess_for(model, score_threshold=0.6)
    assert post.classification == "sigmoid"
    labels_a, boxes_a = _sorted(post(cls_logits, box_reg, anchors, input_size=(128, 128)))
    labels_b, boxes_b = _sorted(_reference(model, cls_logits, box_reg, anchors, (128, 128)))
    assert len(labels_a) > 0 and torch.equal(labels_a, labels_b) and torch.allclose(boxes_a, boxes_b, atol=1e-4)


def test_candidate_cap_keeps_detector_postprocess_detections_at_001_with_thousands_of_candidates() -> None:
    """COCO evaluation's regime: threshold 0.01, 81 classes, tens of thousands of (anchor, class) pairs pass the
    threshold and the per-class top-k leaves thousands of candidates. Boxes crowd a few places, so NMS suppresses
    most of the best `max_candidates` and the cap must widen to reach `detections_per_image` without changing a
    detection."""
    model = small_detector(num_classes=81)
    generator = torch.Generator().manual_seed(7)
    num_anchors = 3000
    centres = torch.randint(0, 6, (num_anchors, 2), generator=generator).float() * 50 + 20
    anchors = torch.cat([centres - 15, centres + 15], 1) + torch.rand(num_anchors, 4, generator=generator) * 4
    cls_logits = torch.randn(num_anchors, 81, generator=generator) * 1.5
    box_reg = torch.randn(num_anchors, 4, generator=generator) * 0.3
    model.score_threshold = 0.01
    scores = cls_logits.softmax(-1)[:, 1:]
    assert int((scores > 0.01).sum()) > 50_000  # precondition: tens of thousands of pairs pass the threshold
    for cap in (1000, 150):
        post = DetectionPostprocess(
            score_threshold=0.01,
            nms_threshold=model.nms_threshold,
            topk_candidates=model.topk_candidates,
            detections_per_image=model.detections_per_image,
            max_candidates=cap,
        )
        ours = post(cls_logits, box_reg, anchors, input_size=(320, 320))
        ref = _reference(model, cls_logits, box_reg, anchors, (320, 320))
        assert len(ref["labels"]) == model.detections_per_image
        labels_a, boxes_a = _sorted(ours)
        labels_b, boxes_b = _sorted(ref)
        assert torch.equal(labels_a, labels_b), cap
        assert torch.allclose(boxes_a, boxes_b, atol=1e-4), cap
        assert torch.allclose(ours["scores"], ref["scores"], atol=1e-6), cap  # both best first


def test_candidate_prefix_widens_when_nms_suppresses_most_of_it() -> None:
    """Ten identical boxes per anchor position: NMS keeps one of each ten, so 100 detections need 1000 candidates
    and a cap of 50 must grow (50 -> 200 -> 800 -> 1000); a truncating cap would return 5 detections."""
    num_anchors = 1000
    anchors = torch.arange(100.0).repeat_interleave(10)[:, None] * 40  # 100 places, 40 px apart
    anchors = torch.cat(
        [anchors, anchors + 30, anchors.new_zeros(num_anchors, 1) + 10, anchors.new_zeros(num_anchors, 1) + 40], 1
    )[:, [0, 2, 1, 3]]
    cls_logits = torch.zeros(num_anchors, 2)
    cls_logits[:, 1] = 5 + torch.linspace(1, 0, num_anchors)
    post = DetectionPostprocess(score_threshold=0.3, topk_candidates=5000, max_candidates=50, detections_per_image=100)
    out = post(cls_logits, torch.zeros(num_anchors, 4), anchors, input_size=(100, 4000))
    assert len(out["labels"]) == 100


def test_segmentation_mask_equals_argmax_in_both_layouts() -> None:
    torch.manual_seed(3)
    logits = torch.randn(21, 37, 53)
    logits[:, :5] = 0.0  # ties: the first class wins, as argmax
    expected = logits.argmax(0).to(torch.uint8)
    assert torch.equal(segmentation_mask(logits, (37, 53)), expected)
    channels_last = logits[None].contiguous(memory_format=torch.channels_last)[0]
    assert torch.equal(segmentation_mask(channels_last, (37, 53)), expected)
    assert segmentation_mask(torch.randn(300, 4, 4), (4, 4)).dtype == torch.int64


def test_ties_across_the_prefix_cut_break_by_position() -> None:
    """Every pair scores 1/3: the first prefix cuts through one bucket of equal scores, which must be taken whole so
    the tie-break by (anchor, class) position holds; the result is the first pairs in that order."""
    num_anchors = 50
    corners = torch.arange(num_anchors, dtype=torch.float32)[:, None] * 20  # far apart: NMS keeps all
    anchors = torch.cat([corners, torch.zeros(num_anchors, 1), corners + 10, torch.full((num_anchors, 1), 10.0)], 1)
    post = DetectionPostprocess(score_threshold=0.3, max_candidates=7, detections_per_image=5, topk_candidates=200)
    out = post(torch.zeros(num_anchors, 3), torch.zeros(num_anchors, 4), anchors, input_size=(20, 1000))
    assert out["labels"].tolist() == [1, 2, 1, 2, 1]
    assert out["boxes"][:, 0].tolist() == [0.0, 0.0, 20.0, 20.0, 40.0]


def test_few_pairs_above_the_threshold_are_ranked_alone_with_the_same_tie_break() -> None:
    """Every fifth anchor scores 1/3 per class (above 0.3), the rest near-equal below it: the passing pairs are
    ranked alone (fewer than a quarter of all), in (anchor, class) position order among their equal scores, and the
    prefix cut through their tie bucket still takes it whole."""
    num_anchors = 50
    corners = torch.arange(num_anchors, dtype=torch.float32)[:, None] * 20
    anchors = torch.cat([corners, torch.zeros(num_anchors, 1), corners + 10, torch.full((num_anchors, 1), 10.0)], 1)
    logits = torch.zeros(num_anchors, 3)
    logits[torch.arange(num_anchors) % 5 != 0, 0] = 1.0  # background wins: 0.21 per foreground class
    logits += torch.randn(num_anchors, 3) * 1e-9 * (torch.arange(num_anchors)[:, None] % 5 != 0)
    post = DetectionPostprocess(score_threshold=0.3, max_candidates=3, detections_per_image=5, topk_candidates=200)
    out = post(logits, torch.zeros(num_anchors, 4), anchors, input_size=(20, 1000))
    assert out["labels"].tolist() == [1, 2, 1, 2, 1]
    assert out["boxes"][:, 0].tolist() == [0.0, 0.0, 100.0, 100.0, 200.0]
    # The same detections as ranking every pair (a threshold of 0.3 reached by a lower threshold and a filter).
    low = DetectionPostprocess(score_threshold=0.2, max_candidates=3, detections_per_image=100, topk_candidates=200)
    every = low(logits, torch.zeros(num_anchors, 4), anchors, input_size=(20, 1000))
    above = every["scores"] > 0.3
    assert every["boxes"][above][:5, 0].tolist() == [0.0, 0.0, 100.0, 100.0, 200.0]
