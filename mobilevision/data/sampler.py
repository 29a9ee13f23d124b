"""A training sampler that resumes mid-epoch exactly where a killed run stopped.

Lightning restores the model, optimizer and loop counters from a checkpoint, but a plain shuffled DataLoader restarts
its epoch from the first batch with a new order. `ResumableSampler` draws each epoch's order from (seed, epoch) only,
like `DistributedSampler` (which it is, so Lightning never swaps it for its own), and skips the samples of the
batches the interrupted run already trained on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (shuffled by seed + epoch, sharded by rank) whose next pass can skip `skip` samples.

    It yields `(index, sample_seed)` keys (see `mobilevision.data.seeding`): each sample's augmentation seed is a
    function of (seed, epoch, rank, position), so skipped and resumed passes augment exactly as an unbroken one.
    """

    def __init__(self, dataset: Sized, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        # The sampler counts its own passes. Lightning also calls this at every epoch start, but after a resume
        # from a checkpoint written at an epoch's end its count is one ahead (measured: the next epoch replayed
        # the order of the one after it); the sampler's own count comes from the optimizer steps and is exact.
        pass

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        skip, self.skip = self.skip, 0  # only the first pass after a resume is shortened
        generator = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 4099 + self.rank) % 2**63)
        seeds = torch.randint(0, 2**31 - 1, (self.num_samples,), generator=generator).tolist()
        order = super().__iter__()  # DistributedSampler shuffles by seed + self.epoch
        self.epoch += 1  # the next pass is the next epoch
        return itertools.islice(zip(order, seeds), skip, None)


def train_sampler(dataset: Sized, trainer: Any, batch_size: int) -> ResumableSampler:
    """The sampler for a training DataLoader built by `trainer` (None outside a Trainer).

    Where to start comes from the optimizer steps already taken (restored from the checkpoint on a resume): the epoch
    is `batches // batches_per_epoch` and the batches of that epoch already trained on are skipped, so a resumed run
    sees the samples, in the order and with the augmentation, that an unbroken run would.
    """
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if trainer is None:
        return ResumableSampler(dataset, seed=seed)
    sampler = ResumableSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, seed=seed)
    batches_per_epoch = len(sampler) // batch_size  # drop_last=True
    batches_done = trainer.global_step * trainer.accumulate_grad_batches
    sampler.epoch, done_in_epoch = divmod(batches_done, batches_per_epoch) if batches_per_epoch else (0, 0)
    sampler.skip = done_in_epoch * batch_size
    return sampler
