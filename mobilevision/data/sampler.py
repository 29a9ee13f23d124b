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

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        skip, self.skip = self.skip, 0  # only the first pass after a resume is shortened
        generator = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 4099 + self.rank) % 2**63)
        seeds = torch.randint(0, 2**31 - 1, (self.num_samples,), generator=generator).tolist()
        return itertools.islice(zip(super().__iter__(), seeds), skip, None)


def train_sampler(dataset: Sized, trainer: Any, batch_size: int) -> ResumableSampler:
    """The sampler for a training DataLoader built by `trainer` (None outside a Trainer).

    Reads the restored loop counters: when the run resumes from a checkpoint written mid-epoch, the batches already
    trained on in that epoch are skipped and the epoch's order is the one the interrupted run used.
    """
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if trainer is None:
        return ResumableSampler(dataset, seed=seed)
    sampler = ResumableSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, seed=seed)
    epoch = trainer.current_epoch
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    batches_per_epoch = len(sampler) // batch_size  # drop_last=True
    if trainer.fit_loop.restarting and 0 < progress.processed < batches_per_epoch:
        sampler.skip = progress.processed * batch_size
    elif trainer.fit_loop.restarting and progress.processed >= batches_per_epoch > 0:
        epoch += 1  # the checkpoint was written at the end of an epoch: the next one starts fresh
    # Set now, not only when Lightning sets it at epoch start: worker processes draw indices as soon as the
    # iterator is created, before that.
    sampler.set_epoch(epoch)
    return sampler
