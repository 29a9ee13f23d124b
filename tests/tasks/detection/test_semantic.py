"""The training-only dense semantic loss of detectors (`tasks/detection/semantic.py`)."""

from __future__ import annotations

import math

import pytest
import torch

from mobilevision.tasks.detection.semantic import VOID, SemanticLoss, cell_labels, paint_box_labels, sample_mask
from mobilevision.tasks.detection.module import DetectionTask


def test_cells_take_the_class_of_the_smallest_box_holding_their_centre() -> None:
    # A 4x4 grid over a 40x40 image: cell centres at 5, 15, 25, 35.
    boxes = torch.tensor([[0.0, 0.0, 30.0, 30.0],    # class 1: centres 5..25 in both axes (3x3 cells)
                          [10.0, 10.0, 20.0, 20.0],  # class 2, smaller, inside it: the one centre (15, 15)
                          [31.0, 31.0, 34.0, 34.0]])  # class 3: holds no cell centre (35 is outside)
    labels = torch.tensor([1, 2, 3])
    painted = paint_box_labels(boxes, labels, (4, 4), (40, 40))
    expected = torch.tensor([[1, 1, 1, 0],
                             [1, 2, 1, 0],
                             [1, 1, 1, 0],
                             [0, 0, 0, 0]])
    assert torch.equal(painted, expected)
    # Order does not matter: the smallest box wins wherever the boxes are listed.
    assert torch.equal(paint_box_labels(boxes.flip(0), labels.flip(0), (4, 4), (40, 40)), expected)


def test_a_non_square_grid_follows_the_image_axes() -> None:
    # A box over the left half of a 20 (high) x 40 (wide) image, on a 2x4 grid.
    painted = paint_box_labels(torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([5]), (2, 4), (20, 40))
    assert torch.equal(painted, torch.tensor([[5, 5, 0, 0], [5, 5, 0, 0]]))


def test_no_boxes_paints_background() -> None:
    painted = paint_box_labels(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), (3, 5), (30, 50))
    assert painted.shape == (3, 5) and not painted.any()


def test_a_mask_is_sampled_at_the_cell_centres_and_wins_over_the_boxes() -> None:
    mask = torch.zeros(8, 8, dtype=torch.int64)
    mask[0:4, 0:4] = 3
    mask[6:8, :] = VOID
    # 4x4 grid over 8x8: centres at pixels 1, 3, 5, 7.
    expected = torch.tensor([[3, 3, 0, 0], [3, 3, 0, 0], [0, 0, 0, 0], [VOID] * 4])
    assert torch.equal(sample_mask(mask, (4, 4)), expected)
    target = {"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([1]), "mask": mask}
    assert torch.equal(cell_labels(target, (4, 4), (8, 8), torch.device("cpu")), expected)
    del target["mask"]
    assert torch.equal(cell_labels(target, (4, 4), (8, 8), torch.device("cpu")), torch.ones(4, 4, dtype=torch.int64))


def test_void_cells_are_ignored_and_an_all_void_batch_costs_nothing() -> None:
    loss_fn = SemanticLoss([2], num_classes=3)
    feature = torch.randn(1, 2, 4, 4, requires_grad=True)
    void = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "mask": torch.full((8, 8), VOID, dtype=torch.int64)}
    loss = loss_fn([feature], [void], (8, 8))
    assert float(loss) == 0.0
    loss.backward()  # joined to the graph: a distributed step still all-reduces every parameter
    half = dict(void, mask=torch.cat([torch.zeros(4, 8, dtype=torch.int64), void["mask"][4:]]))
    with torch.no_grad():
        only_top = float(loss_fn([feature], [half], (8, 8)))
        top = loss_fn.classifiers[0](feature)[:, :, :2].float()
    assert only_top == pytest.approx(float(torch.nn.functional.cross_entropy(top, torch.zeros(1, 2, 4, dtype=torch.int64))))


def test_loss_starts_at_the_prior_and_can_be_learned() -> None:
    torch.manual_seed(0)
    loss_fn = SemanticLoss([8, 4], num_classes=3, background_prior=0.75)
    assert torch.allclose(loss_fn.classifiers[0].bias, torch.tensor([0.75, 0.125, 0.125]).log())
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([2])}] * 2
    # Features that encode where the box is: learnable by a 1x1 classifier.
    fine = torch.zeros(2, 8, 8, 8)
    fine[:, 0, :4, :4] = 1.0
    coarse = torch.zeros(2, 4, 4, 4)
    coarse[:, 0, :2, :2] = 1.0
    with torch.no_grad():
        start = float(loss_fn([fine, coarse], targets, (32, 32)))
    # At the prior every cell costs -log(prior of its class): 48 background cells, 16 of class 2 over the two maps.
    assert start == pytest.approx((48 * -math.log(0.75) + 16 * -math.log(0.125)) / 64 * 2 / 2, rel=1e-2)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.1)
    for _ in range(100):
        optimizer.zero_grad()
        loss = loss_fn([fine, coarse], targets, (32, 32))
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.05 * start


def test_detection_task_trains_the_classifiers_and_keeps_them_out_of_the_model() -> None:
    kwargs = {"model": "ssdlite_mobilenet_v2", "num_classes": 4, "width_mult": 0.35, "input_size": 64,
              "taps": ["layer_8/expansion", "layer_15/expansion", "layer_19"], "extra_depths": [32, 32, 16],
              "assignment": "atss", "classification": "sigmoid", "focal_gamma": 2.0}
    task = DetectionTask(**kwargs, semantic_weight=0.5)
    plain = DetectionTask(**kwargs)
    assert task.semantic is not None and plain.semantic is None
    assert len(task.semantic.classifiers) == 3
    # The auxiliary classifiers are the task's, not the network's: nothing of them is exported or served.
    assert not any("semantic" in key for key in task.model.state_dict())
    assert set(task.state_dict()) - set(plain.state_dict()) == {
        f"semantic.classifiers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    # ...but the optimiser trains them.
    optimizer = task.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in trained for p in task.semantic.parameters())

    # The training step itself runs in every fit of the shapes detector config (tests/test_training.py).


def test_semantic_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="semantic_weight"):
        DetectionTask(num_classes=4, width_mult=0.35, semantic_weight=-1.0)


def test_masks_in_another_label_space_are_refused_before_training() -> None:
    from types import SimpleNamespace

    from mobilevision.tasks.detection.data import DetectionMeta

    task = DetectionTask(num_classes=3, width_mult=0.35, semantic_weight=0.25)
    meta = DetectionMeta(["background", "cat", "dog"], [0, 1, 2])
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(meta=meta, mask_class_names=["background", "dog", "cat"]))
    with pytest.raises(ValueError, match="label space"):
        task.setup("fit")
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(meta=meta, mask_class_names=["background", "cat", "dog"]))
    task.setup("fit")  # the same names in the same order: accepted
