"""What detection and segmentation training share: optimiser injection, the learning-rate schedule, an EMA of the
weights, the guard against non-finite losses, and the metadata that travels in every checkpoint.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from torch import Tensor, nn

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]


@dataclass
class LRSchedule:
    """Learning-rate factor over training progress, with a linear warm-up.

    Progress runs from 0 to 1 over `trainer.max_steps` (or max_epochs' steps) or over `trainer.max_time`, whichever
    ends first, so a time-budgeted run (the CPU demo) still anneals to the end of its budget.

    Args:
        kind: "cosine" (the detection references), "poly" (DeepLab: (1 - progress) ** power) or "constant".
        warmup_steps: optimizer steps of linear warm-up from `warmup_factor` to 1.
        warmup_factor: the factor at step 0.
        power: exponent of the poly schedule.
        min_factor: the factor at the end of training.
    """

    kind: str = "cosine"
    warmup_steps: int = 0
    warmup_factor: float = 0.01
    power: float = 0.9
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "poly", "constant"):
            raise ValueError(f"schedule kind must be 'cosine', 'poly' or 'constant', got {self.kind!r}")

    def factor(self, step: int, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if self.kind == "cosine":
            value = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.kind == "poly":
            value = self.min_factor + (1 - self.min_factor) * (1 - progress) ** self.power
        else:
            value = 1.0
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            value *= self.warmup_factor + (1 - self.warmup_factor) * alpha
        return value


class NonFiniteLossError(RuntimeError):
    """Training produced too many non-finite losses in a row to go on."""


class BaseTask(pl.LightningModule):
    """Shared training machinery; the task subclasses own the model, loss, metrics and steps.

    Args:
        optimizer: a callable taking parameter groups (LightningCLI's `class_path`/`init_args` for a torch optimizer);
            None means AdamW(lr=1e-3, weight_decay=1e-4). Norm layers and biases get no weight decay.
        schedule: the learning-rate schedule, applied per optimizer step.
        ema_decay: keep an exponential moving average of the weights with this decay (e.g. 0.9998) and evaluate and
            export it; None disables it. The decay ramps up as (1 + n) / (10 + n) early on, as in the TF reference.
        max_nonfinite_steps: consecutive non-finite losses tolerated (each such step is skipped and counted) before
            the run stops with the batch's files named.
        init_from: start from the network weights of a mobilevision checkpoint (e.g. the COCO pre-training of a
            VOC run); unlike `--ckpt_path`, nothing else of that run (optimizer, step) is restored. Every tensor
            must match, except those a task declares class-specific (`class_specific_keys`) when the class count
            differs: they keep their fresh initialisation, with a warning (fine-tuning on another class list).
        channels_last: run the networks in channels-last memory format. Depthwise convolutions are much faster so
            on CPUs (the shapes demo's training step 1.7x, docs/demo.md) and under mixed precision on GPUs.
    """

    def __init__(
        self,
        *,
        optimizer: OptimizerFactory | None = None,
        schedule: LRSchedule | None = None,
        ema_decay: float | None = None,
        max_nonfinite_steps: int = 10,
        channels_last: bool = True,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.init_from = init_from
        self.optimizer_factory = optimizer
        self.schedule = schedule or LRSchedule()
        self.ema_decay = ema_decay
        self.max_nonfinite_steps = max_nonfinite_steps
        self._nonfinite_in_a_row = 0
        self._buffer_snapshot: list[Tensor] = []
        self.register_buffer("nonfinite_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.int64))
        self.model: nn.Module
        self.ema_model: nn.Module | None = None

    def _finish_init(self) -> None:
        # Call at the end of the subclass's __init__, once `self.model` exists: initial weights, then the EMA copy.
        if self.init_from is not None:
            from mobilevision.checkpoint import load_checkpoint

            source, _ = load_checkpoint(self.init_from)
            state, own = source.state_dict(), self.model.state_dict()
            fresh = sorted(
                k
                for k in self.class_specific_keys()
                if k in state and k in own and tuple(state[k].shape) != tuple(own[k].shape)
            )
            if fresh:
                warnings.warn(
                    f"init_from {self.init_from}: {len(fresh)} class-specific tensors have another class count and "
                    f"start fresh (first: {fresh[:2]})",
                    stacklevel=2,
                )
                state = {k: v for k, v in state.items() if k not in fresh}
                state.update({k: own[k] for k in fresh})
            self.model.load_state_dict(state, strict=True)
        if self.ema_decay is not None:
            if not 0.0 < self.ema_decay < 1.0:
                raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)

    def class_specific_keys(self) -> list[str]:
        """`self.model` state_dict keys whose shape follows the class count (see `init_from`); none by default."""
        return []

    def on_fit_start(self) -> None:
        self._apply_memory_format()

    def on_validation_start(self) -> None:
        self._apply_memory_format()

    def on_test_start(self) -> None:
        self._apply_memory_format()

    def _apply_memory_format(self) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.channels_last and isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            if batch[0].ndim == 4:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return batch

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate and export: the EMA when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    # ---------------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                is_norm = isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm))
                (no_decay if is_norm or name == "bias" else decay).append(param)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        if self.optimizer_factory is None:
            return torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-4)
        return self.optimizer_factory(groups)

    def training_progress(self) -> float:
        """Fraction of the training budget used: steps or wall time, whichever is further along."""
        trainer = self.trainer
        fractions = [0.0]
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None:
            try:
                estimate = trainer.estimated_stepping_batches
                total = estimate if math.isfinite(estimate) and estimate > 0 else None
            except Exception:  # noqa: BLE001 - no dataloader yet (e.g. tests driving the task by hand)
                total = None
        if total:
            fractions.append(trainer.global_step / total)
        for callback in trainer.callbacks:
            if isinstance(callback, Timer) and callback._duration:
                fractions.append(callback.time_elapsed("train") / callback._duration)
        return min(1.0, max(fractions))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        factor = self.schedule.factor(self.trainer.global_step, self.training_progress())
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=False)
        # A skipped step must leave the model as it was, but its forward pass has already moved the BatchNorm
        # statistics (to NaN when activations overflowed: a model that trains on but evaluates to NaN). Copied here,
        # put back by `guard_loss` on a skip; ~100 small tensors, a fraction of a millisecond.
        self._buffer_snapshot = [b.detach().clone() for b in self.model.buffers()]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here, not in on_train_batch_end: step checkpoints are written by a callback before that hook runs, and
        # must hold the EMA of the very weights they hold, for an exact resume.
        if self.ema_model is not None:
            self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.ema_model is not None and self.ema_decay is not None
        n = int(self.ema_updates)
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        ema_params = [p for p in self.ema_model.parameters() if p.dtype.is_floating_point]
        params = [p.detach() for p in self.model.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buffer, buffer in zip(self.ema_model.buffers(), self.model.buffers()):
            ema_buffer.copy_(buffer)
        self.ema_updates += 1

    # ------------------------------------------------------------------------------------------------- evaluation
    def eval_step(self, batch: Any, split: str) -> None:
        """Score one evaluation batch of `split` ("val" or "test") into the task's evaluators."""
        raise NotImplementedError(f"{type(self).__name__} must define eval_step")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        """The task's answer (`forward`) for a batch of images, or of tuples whose first entry is the images."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images)

    def empty_step_loss(self) -> Tensor:
        """A zero loss joined to every parameter, for a batch that lost (almost) all its samples to defects.

        Every process still takes part in the gradient all-reduce, so distributed training does not hang; a batch
        of one image is dropped too, since BatchNorm cannot normalise the 1x1 maps of a single image.
        """
        # self.parameters(), not self.model's: a task's own trained parameters (loss weights, auxiliary classifiers)
        # take part in the all-reduce too.
        return sum((p.sum() for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device)) * 0.0

    def guard_loss(self, loss: Tensor, files: list[str]) -> Tensor | None:
        """Return `loss`, or None (the step is skipped) when it is not finite on any process.

        All processes agree before skipping, so distributed training never deadlocks on a skipped step.
        """
        finite = torch.isfinite(loss.detach()).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() == 1.0:
            self._nonfinite_in_a_row = 0
            return loss
        self.nonfinite_steps += 1
        self._nonfinite_in_a_row += 1
        buffers = list(self.model.buffers())
        if len(buffers) == len(self._buffer_snapshot):
            with torch.no_grad():
                for buffer, saved in zip(buffers, self._buffer_snapshot):
                    buffer.copy_(saved)
        shown = ", ".join(files[:8]) + (" ..." if len(files) > 8 else "")
        message = (
            f"non-finite loss at step {self.trainer.global_step} (batch files: {shown or 'unknown'}); "
            f"step skipped ({int(self.nonfinite_steps)} so far)"
        )
        if self._nonfinite_in_a_row > self.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self._nonfinite_in_a_row} non-finite losses in a row; stopping. Last: {message}. "
                "Lower the learning rate or check these files."
            )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        self.log("train/nonfinite_steps", self.nonfinite_steps.float())
        return None

    # --------------------------------------------------------------------------------------------------- pictures
    def plot_evaluation(self, folder: Path, *, split: str = "val") -> list[Path]:
        """Write this task's pictures of its last `split` evaluation into `folder` (`mobilevision.plots.PlotCallback`
        calls it at the end of fit / validate / test); returns the files written. A task without any writes none."""
        return []

    # ------------------------------------------------------------------------------------------------ checkpoints
    def checkpoint_meta(self) -> dict[str, Any]:
        """What `mobilevision.checkpoint` needs to rebuild the model without the training config."""
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mobilevision"] = self.checkpoint_meta()
        # Dropout draws from torch's generator: keep its state so a resumed run draws what an unbroken one would.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("torch_rng_state")
        if isinstance(state, Tensor) and self._trainer is not None and self.trainer.state.fn == "fit":
            torch.set_rng_state(state)
