from __future__ import annotations

import torch

from mobilevision.tasks.detection.loss import MultiBoxLoss, match_anchors


def test_matching_threshold_and_forced_best_anchor() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60], [80, 80, 100, 100]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10], [78, 78, 90, 90]], dtype=torch.float32)
    matched = match_anchors(gt, anchors)
    # Anchor 0 and 1 overlap gt 0 with IoU 1.0 and 0.9; anchor 3 has IoU 0.25 with gt 1 but is its best: forced.
    assert matched.tolist() == [0, 0, -1, 1]
    assert match_anchors(torch.zeros(0, 4), anchors).tolist() == [-1, -1, -1, -1]


def test_loss_is_zero_box_term_for_perfect_offsets_and_mines_negatives() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70], [5, 5, 8, 8]],
                           dtype=torch.float32)
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
