"""SegmentationTask's loss options: the background prior of the classifier and the class-weighted cross-entropy."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.nn import functional as F

from mobilevision.tasks.segmentation.module import SegmentationTask


def _task(**kwargs: object) -> SegmentationTask:
    return SegmentationTask(num_classes=4, width_mult=0.35, **kwargs)


def test_background_prior_sets_the_classifier_biases_to_the_log_prior() -> None:
    task = _task(background_prior=0.85)
    bias = task.model.head.classifier.bias.detach()
    assert torch.allclose(bias.softmax(0), torch.tensor([0.85, 0.05, 0.05, 0.05]), atol=1e-6)
    assert math.isclose(float(bias[0]), math.log(0.85), rel_tol=1e-6)
    # The EMA copy starts from the same initial weights.
    ema = _task(background_prior=0.85, ema_decay=0.99).ema_model.head.classifier.bias.detach()
    assert torch.allclose(ema.softmax(0)[0], torch.tensor(0.85))


def test_without_background_prior_the_classifier_keeps_its_default_init() -> None:
    torch.manual_seed(0)
    bias = _task().model.head.classifier.bias.detach()
    assert bias.abs().max() < 0.1 and bias.std() > 0  # PyTorch's uniform init, not a prior


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.5, 1.5])
def test_background_prior_outside_0_1_is_refused(prior: float) -> None:
    with pytest.raises(ValueError, match="background_prior must be in"):
        _task(background_prior=prior)


def _loss(task: SegmentationTask, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = task.training_step((images, masks), 0)
    assert loss is not None
    return loss


def test_class_weights_weight_the_training_loss_per_class() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 255
    masks = torch.randint(0, 4, (2, 64, 64))
    masks[:, :4] = 255  # void pixels count for nothing, weighted or not
    weights = [0.0, 1.0, 1.0, 1.0]
    task = _task(class_weights=weights).eval()  # eval: dropout off, so both losses see the same logits
    weighted = _loss(task, images, masks)
    logits = task.model(images).float()
    foreground_only = F.cross_entropy(logits, masks.masked_fill(masks == 0, 255), ignore_index=255)
    assert torch.allclose(weighted, foreground_only, atol=1e-6)
    plain = F.cross_entropy(logits, masks, ignore_index=255)
    assert not torch.allclose(weighted, plain, atol=1e-4)
    # Equal weights are the plain loss (the weighted mean divides by the summed weights).
    task.class_weights = torch.full((4,), 3.0)
    assert torch.allclose(_loss(task, images, masks), plain, atol=1e-6)


@pytest.mark.parametrize(
    "weights", [[1.0, 2.0], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, float("nan"), 1.0, 1.0]]
)
def test_bad_class_weights_are_refused(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="class_weights must be 4 finite non-negative numbers"):
        _task(class_weights=weights)


def test_class_weights_follow_the_module_and_stay_out_of_the_state_dict() -> None:
    task = _task(class_weights=[1.0, 3.0, 3.0, 3.0])
    assert isinstance(task.class_weights, torch.Tensor)
    assert task.to(torch.float64).class_weights.dtype == torch.float64  # a buffer: moved with the module
    logits, masks = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    assert task.loss(logits, masks).dtype == torch.float32  # the loss stays in float32 whatever the module's dtype
    assert "class_weights" not in task.state_dict()
