from __future__ import annotations

import itertools
import statistics

import pytest
import torch
from torchvision.ops import box_iou, sigmoid_focal_loss

from mobilevision.models.anchors import DefaultBoxes
from mobilevision.tasks.detection.loss import MultiBoxLoss, match_anchors, match_anchors_atss


def test_matching_threshold_and_forced_best_anchor() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60], [80, 80, 100, 100]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10], [78, 78, 90, 90]], dtype=torch.float32)
    matched = match_anchors(gt, anchors)
    # Anchor 0 and 1 overlap gt 0 with IoU 1.0 and 0.9; anchor 3 has IoU 0.25 with gt 1 but is its best: forced.
    assert matched.tolist() == [0, 0, -1, 1]
    assert match_anchors(torch.zeros(0, 4), anchors).tolist() == [-1, -1, -1, -1]


def test_loss_is_zero_box_term_for_perfect_offsets_and_mines_negatives() -> None:
    anchors = torch.tensor(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70], [5, 5, 8, 8]], dtype=torch.float32
    )
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}]
    loss = MultiBoxLoss(neg_pos_ratio=2)
    logits = torch.zeros(1, 5, 3)
    outputs = {"cls_logits": logits.clone().requires_grad_(), "bbox_regression": torch.zeros(1, 5, 4)}
    out = loss(outputs, anchors, targets)
    assert out["num_positives"].item() == 1
    assert out["loss_box"].item() == 0.0
    # One positive + two mined negatives, each cross-entropy log(3) at uniform logits.
    assert abs(out["loss_cls"].item() - 3 * torch.log(torch.tensor(3.0)).item()) < 1e-5
    out["loss"].backward()
    grad = outputs["cls_logits"].grad[0].abs().sum(-1)
    assert (grad > 0).sum().item() == 3  # only the positive and the 2 hardest negatives get gradient


def test_background_image_and_sigmoid_variant() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    outputs = {"cls_logits": torch.randn(1, 2, 3), "bbox_regression": torch.randn(1, 2, 4)}
    for kind in ("softmax", "sigmoid"):
        out = MultiBoxLoss(classification=kind)(outputs, anchors, targets)
        assert out["loss_box"].item() == 0 and out["loss_cls"].item() > 0
        assert torch.isfinite(out["loss"])


def test_training_decreases_loss_on_one_batch() -> None:
    from mobilevision import build_model

    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35)
    model.train()
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 40.0, 120.0, 100.0], [0.0, 0.0, 20.0, 20.0]]), "labels": torch.tensor([2, 1])},
    ]
    criterion = MultiBoxLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        outputs, anchors = model.forward_raw(images)
        loss = criterion(outputs, anchors, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_lower_iou_threshold_gives_more_positives() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 6], [3, 0, 13, 10]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)
    # IoUs 1.0, 0.6 and 0.54 / (1 + 0.46) = 0.538...: all positive at 0.5; at 0.55 the third drops out.
    assert match_anchors(gt, anchors, iou_threshold=0.55).tolist() == [0, 0, -1]
    assert match_anchors(gt, anchors, iou_threshold=0.5).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="iou_threshold"):
        MultiBoxLoss(iou_threshold=0.0)


def test_focal_loss_uses_every_box_and_equals_torchvision() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=torch.float32)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}]
    logits = torch.randn(1, 3, 3, requires_grad=True)
    outputs = {"cls_logits": logits, "bbox_regression": torch.zeros(1, 3, 4)}
    out = MultiBoxLoss(classification="sigmoid", focal_gamma=2.0)(outputs, anchors, targets)
    expected = sigmoid_focal_loss(logits[0, :, 1:], torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]), reduction="sum")
    assert torch.allclose(out["loss_cls"], expected)
    out["loss"].backward()
    assert (logits.grad[0, :, 1:] != 0).all() and (logits.grad[0, :, 0] == 0).all()  # background column unused
    with pytest.raises(ValueError, match="sigmoid"):
        MultiBoxLoss(classification="softmax", focal_gamma=2.0)
    # Unset, the scoring is the detector's: binding to a softmax detector is the same mistake.
    assert MultiBoxLoss(focal_gamma=2.0).classification == "sigmoid"
    with pytest.raises(ValueError, match="sigmoid"):
        MultiBoxLoss(focal_gamma=2.0).bind(classification="softmax", boxes_per_location=[6])


def test_giou_box_loss_is_zero_for_exact_boxes_and_grows_with_the_error() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [40, 40, 50, 50]], dtype=torch.float32)
    targets = [{"boxes": torch.tensor([[1.0, 1.0, 12.0, 9.0]]), "labels": torch.tensor([1])}]
    criterion = MultiBoxLoss(box_loss="giou", box_weight=2.0)
    exact = criterion.box_coder.encode(targets[0]["boxes"], anchors[:1])
    offsets = torch.zeros(1, 2, 4)
    offsets[0, 0] = exact[0]
    outputs = {"cls_logits": torch.zeros(1, 2, 2), "bbox_regression": offsets}
    out = criterion(outputs, anchors, targets)
    assert out["loss_box"].item() < 1e-5
    offsets[0, 0, 0] += 1.0  # one coded unit: a tenth of the anchor width, 1 px
    worse = criterion(outputs, anchors, targets)
    assert worse["loss_box"].item() > 0.05
    assert torch.allclose(worse["loss"], 2.0 * worse["loss_box"] + worse["loss_cls"])
    with pytest.raises(ValueError, match="box_loss"):
        MultiBoxLoss(box_loss="l2")


def _naive_atss(
    gt: torch.Tensor, anchors: torch.Tensor, level_sizes: list[int], k: int, per_location: list[int] | None = None
) -> list[int]:
    """ATSS written out box by box, to check the vectorised version against: the boxes of the k nearest locations
    (k x boxes per location) of each map."""
    per_location = per_location or [1] * len(level_sizes)
    iou = box_iou(gt, anchors).tolist()
    centres = [((a[0] + a[2]) / 2, (a[1] + a[3]) / 2) for a in anchors.tolist()]
    matched, claimed = [-1] * len(anchors), [0.0] * len(anchors)
    for g, (x1, y1, x2, y2) in enumerate(gt.tolist()):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        candidates, start = [], 0
        for size, n in zip(level_sizes, per_location):
            level = range(start, start + size)
            candidates += sorted(level, key=lambda a: (centres[a][0] - cx) ** 2 + (centres[a][1] - cy) ** 2)[: k * n]
            start += size
        values = [iou[g][a] for a in candidates]
        threshold = statistics.mean(values) + (statistics.stdev(values) if len(values) > 1 else 0.0)
        for a in candidates:
            inside = x1 < centres[a][0] < x2 and y1 < centres[a][1] < y2
            if iou[g][a] >= threshold and inside and iou[g][a] > claimed[a]:
                matched[a], claimed[a] = g, iou[g][a]
    for g in range(len(gt)):
        matched[max(range(len(anchors)), key=lambda a: iou[g][a])] = g
    return matched


def _random_boxes(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * 100
    wh = low + torch.rand(n, 2, generator=generator) * (high - low)
    return torch.cat([xy, xy + wh], 1)


def test_atss_equals_a_box_by_box_count() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(20):
        level_sizes = [60, 30, 10]
        anchors = torch.cat(
            [
                _random_boxes(generator, 60, 5, 15),
                _random_boxes(generator, 30, 15, 40),
                _random_boxes(generator, 10, 40, 80),
            ]
        )
        gt = _random_boxes(generator, 1 + trial % 5, 4, 60)
        got = match_anchors_atss(gt, anchors, level_sizes, topk=5).tolist()
        assert got == _naive_atss(gt, anchors, level_sizes, 5), trial


def test_atss_takes_every_box_of_the_nearest_locations_on_real_default_boxes() -> None:
    """With the real DefaultBoxes (6 boxes share each centre), candidates are the k nearest *locations* with all
    their boxes: the answer equals the box-by-box reference and does not depend on how ties between boxes of one
    centre are broken (reversing the box order within each location gives the same assignment)."""
    boxes = DefaultBoxes(num_maps=6, min_scale=0.07, max_scale=0.75, reduce_lowest=False)
    sizes = [(28, 28), (14, 14), (7, 7), (4, 4), (2, 2), (1, 1)]
    anchors = boxes.pixels(sizes, (224, 224))
    per_location = list(boxes.num_anchors)
    level_sizes = [h * w * n for (h, w), n in zip(sizes, per_location)]
    generator = torch.Generator().manual_seed(1)
    gt = torch.cat([_random_boxes(generator, 3, 10, 30), _random_boxes(generator, 2, 40, 110)]).clamp(0, 223)
    got = match_anchors_atss(gt, anchors, level_sizes, boxes_per_location=per_location)
    assert got.tolist() == _naive_atss(gt, anchors, level_sizes, 9, per_location)
    # The same boxes with each location's boxes in reverse order: a permutation of the default boxes.
    order = torch.cat(
        [
            torch.arange(start, start + size).view(-1, n).flip(1).flatten()
            for start, size, n in zip(itertools.accumulate([0, *level_sizes[:-1]]), level_sizes, per_location)
        ]
    )
    permuted = match_anchors_atss(gt, anchors[order], level_sizes, boxes_per_location=per_location)
    assert torch.equal(permuted, got[order])
    # Only k boxes per map (the candidates before the fix) picks among a location's boxes by tie-breaking: the
    # assignment then changes with the order of boxes that share a centre.
    old = match_anchors_atss(gt, anchors, level_sizes)
    assert not torch.equal(match_anchors_atss(gt, anchors[order], level_sizes), old[order])


def test_atss_gives_small_objects_more_positives_and_large_ones_fewer() -> None:
    # The shapes demo's default boxes at 224: maps of 28, 14, 7, 4, 2, 1 cells, 6 boxes each.
    boxes = DefaultBoxes(num_maps=6, min_scale=0.07, max_scale=0.75, reduce_lowest=False)
    sizes = [(28, 28), (14, 14), (7, 7), (4, 4), (2, 2), (1, 1)]
    anchors = boxes.pixels(sizes, (224, 224))
    level_sizes = [h * w * 6 for h, w in sizes]
    gt = torch.tensor([[10.0, 10.0, 24.0, 24.0], [100.0, 100.0, 200.0, 210.0]])  # 14 px and ~105 px
    fixed = match_anchors(gt, anchors, iou_threshold=0.4)
    adaptive = match_anchors_atss(gt, anchors, level_sizes)
    assert (adaptive == 0).sum() > (fixed == 0).sum() >= 1
    assert 1 <= (adaptive == 1).sum() < (fixed == 1).sum()
    centres = (anchors[adaptive == 0, :2] + anchors[adaptive == 0, 2:]) / 2
    assert ((centres > 10) & (centres < 24)).all()  # positives are centred inside their object
    assert match_anchors_atss(torch.zeros(0, 4), anchors, level_sizes).eq(-1).all()
    with pytest.raises(ValueError, match="level_sizes"):
        match_anchors_atss(gt, anchors, [10, 20])


def test_atss_assignment_in_the_loss() -> None:
    anchors = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 11], [0, 0, 10, 12], [0, 0, 10, 14], [40, 40, 50, 50]], dtype=torch.float32
    )
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
    outputs = {"cls_logits": torch.zeros(1, 5, 2), "bbox_regression": torch.zeros(1, 5, 4)}
    by_iou = MultiBoxLoss(classification="sigmoid", focal_gamma=2.0)
    atss = MultiBoxLoss(assignment="atss", atss_topk=4, classification="sigmoid", focal_gamma=2.0)
    # IoUs 1, 0.91, 0.83, 0.71 on the first map and 0 on the second: four positives at IoU 0.5. ATSS's threshold,
    # mean + std of the five candidates, is 1.08: none passes and the best box is the only (forced) positive.
    assert by_iou.targets(targets, anchors)[0].tolist() == [[1, 1, 1, 1, 0]]
    assert atss.targets(targets, anchors, [4, 1])[0].tolist() == [[1, 0, 0, 0, 0]]
    assert atss(outputs, anchors, targets, [4, 1])["num_positives"].item() == 1
    with pytest.raises(ValueError, match="assignment"):
        MultiBoxLoss(assignment="center")
    with pytest.raises(ValueError, match="atss_topk"):
        MultiBoxLoss(assignment="atss", atss_topk=0)
