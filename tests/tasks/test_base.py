"""The non-finite loss guard, driven by a real `lightning.Trainer`: a NaN step is skipped (the model as it was before
it, BatchNorm statistics included), counted, and its batch's files named; too many in a row stop the run with the
files named. Never a silently NaN model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mobilevision.tasks.base import NonFiniteLossError
from mobilevision.tasks.detection.data import collate_detection
from mobilevision.tasks.detection.module import DetectionTask

SIZE = 96
BATCH = 2


class _Images(Dataset):
    """8 random images with one box each; the samples listed in `nan_boxes` have a box with NaN coordinates."""

    def __init__(self, nan_boxes: set[int]) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (8, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
        self.nan_boxes = nan_boxes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        box = [10.0, 12.0, 60.0, 70.0] if index not in self.nan_boxes else [math.nan, 12.0, 60.0, 70.0]
        target = {
            "boxes": torch.tensor([box]),
            "labels": torch.tensor([1 + index % 2]),
            "image_id": index,
            "orig_size": (SIZE, SIZE),
            "file": f"img_{index:03d}.jpg",
        }
        return self.images[index], target


class _Recorder(pl.Callback):
    """Parameters and buffers before and after every training batch."""

    def __init__(self) -> None:
        self.before: dict[int, dict[str, Tensor]] = {}
        self.after: dict[int, dict[str, Tensor]] = {}

    @staticmethod
    def _state(module: DetectionTask) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.before[batch_idx] = self._state(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.after[batch_idx] = self._state(pl_module)


def _task(**kwargs: Any) -> DetectionTask:
    torch.manual_seed(0)
    return DetectionTask(
        num_classes=3,
        width_mult=0.35,
        input_size=SIZE,
        channels_last=False,
        optimizer=lambda groups: torch.optim.SGD(groups, lr=0.01),
        **kwargs,
    )


def _fit(task: DetectionTask, dataset: Dataset, *callbacks: pl.Callback, max_steps: int = -1) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        num_sanity_val_steps=0,
    )
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, collate_fn=collate_detection)
    trainer.fit(task, train_dataloaders=loader)
    return trainer


def _all_finite(task: DetectionTask) -> bool:
    return all(torch.isfinite(v).all() for v in task.model.state_dict().values() if v.dtype.is_floating_point)


def test_nan_step_is_skipped_counted_and_names_its_files() -> None:
    task, recorder = _task(), _Recorder()
    with pytest.warns(RuntimeWarning, match=r"non-finite loss .*img_002\.jpg, img_003\.jpg.*step skipped \(1 so far\)"):
        trainer = _fit(task, _Images(nan_boxes={3}), recorder)  # batch 1 holds samples 2 and 3
    assert int(task.nonfinite_steps) == 1
    # Lightning still calls the optimizer for the skipped batch (global_step counts it), with no gradients: no update.
    assert trainer.global_step == 4
    # The skipped batch changed nothing (weights and BatchNorm statistics); the others did train.
    for key, value in recorder.before[1].items():
        assert torch.equal(value, recorder.after[1][key]), key
    changed = [k for k, v in recorder.before[2].items() if not torch.equal(v, recorder.after[2][k])]
    assert any(k.endswith("weight") for k in changed)
    assert _all_finite(task)


def test_overflowing_activations_do_not_poison_batchnorm_statistics() -> None:
    # The forward of a NaN step has already updated BatchNorm's running statistics; unless they are put back, the
    # model trains on (train mode uses batch statistics) but evaluates to NaN forever.
    task = _task()
    first_conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv2d))
    calls = {"n": 0}

    def overflow_on_second_batch(module: torch.nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        calls["n"] += 1
        return (inputs[0] * math.inf,) if calls["n"] == 2 else None

    first_conv.register_forward_pre_hook(overflow_on_second_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _fit(task, _Images(nan_boxes=set()))
    assert int(task.nonfinite_steps) == 1
    assert _all_finite(task)
    task.model.eval()
    with torch.no_grad():
        outputs, _ = task.model.forward_raw(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    assert all(torch.isfinite(v).all() for v in outputs.values())


def test_too_many_in_a_row_stop_with_the_files_named() -> None:
    task = _task(max_nonfinite_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(
            NonFiniteLossError, match=r"3 non-finite losses in a row; stopping.*img_004\.jpg, img_005\.jpg"
        ):
            _fit(task, _Images(nan_boxes={0, 2, 4, 6}))
    assert int(task.nonfinite_steps) == 3
    assert _all_finite(task)  # stopped before any NaN reached the weights


def test_isolated_nan_steps_do_not_add_up_to_a_stop() -> None:
    # Batches 0 and 2 are NaN, 1 and 3 are fine: never two in a row, so max_nonfinite_steps=1 never trips.
    task = _task(max_nonfinite_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trainer = _fit(task, _Images(nan_boxes={0, 5}))
    assert int(task.nonfinite_steps) == 2 and trainer.global_step == 4
    assert _all_finite(task)


def test_tasks_start_residual_blocks_as_identities_unless_told_not_to() -> None:
    from mobilevision.models.backbones.mobilenet_v2 import InvertedResidual
    from mobilevision.tasks.segmentation.module import SegmentationTask

    def gammas(task: Any) -> list[Tensor]:
        return [
            b.conv[-1].weight
            for b in task.model.backbone.features
            if isinstance(b, InvertedResidual) and b.use_res_connect
        ]

    for build in (
        lambda **kw: DetectionTask(num_classes=3, width_mult=0.35, **kw),
        lambda **kw: SegmentationTask(num_classes=3, width_mult=0.35, **kw),
    ):
        assert all((g == 0).all() for g in gammas(build()))
        task = build(zero_init_residual=False)
        assert all((g == 1).all() for g in gammas(task))
        # An initialisation only: not part of what a checkpoint needs to rebuild the model.
        assert "zero_init_residual" not in task.model_kwargs


def test_an_empty_step_joins_every_trained_parameter_of_the_task() -> None:
    """A batch that lost its samples returns a zero loss joined to every trained parameter, the task's own included
    (the joint model's learned loss weights): under DDP each must receive a gradient to all-reduce."""
    from mobilevision.tasks.multitask.module import MultiTaskTask

    task = MultiTaskTask(
        num_classes=4, seg_num_classes=4, width_mult=0.35, input_size=64, loss_weighting="uncertainty", ema_decay=0.9
    )
    loss = task.empty_step_loss()
    loss.backward()
    assert float(loss) == 0.0
    trained = [(name, p) for name, p in task.named_parameters() if p.requires_grad]
    assert any(name == "log_vars" for name, _ in trained)
    assert all(p.grad is not None and not p.grad.any() for _, p in trained)
    assert all(p.grad is None for p in task.ema_model.parameters())  # the EMA copy is not trained
