"""The DataLoaders the DataModules of every task build: training (resumable sampling) and evaluation.

Each loader has a torch generator of its own. Creating a DataLoader iterator draws the base seed of its workers
from `loader.generator`, or from torch's global generator when it has none, even with no worker; dropout draws from
that global generator too, and a checkpoint restores it. A loader drawing from it would shift the dropout masks of a
run resumed mid-epoch (it creates its iterator where an unbroken run does not), and the resumed weights would differ.
The workers' seeds do not decide any augmentation (each sample is seeded by the sampler, `mobilevision.data.seeding`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mobilevision.data.sampler import train_sampler


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)))


def train_loader(
    dataset: Dataset, trainer: Any, *, batch_size: int, num_workers: int, collate_fn: Callable[[list[Any]], Any]
) -> DataLoader:
    """Shuffled by the resumable sampler (`mobilevision.data.sampler.train_sampler`), the last incomplete batch
    dropped (a batch of one image breaks BatchNorm on a detector's 1x1 maps)."""
    sampler = train_sampler(dataset, trainer, batch_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        generator=_generator(),
    )


def eval_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any],
    each_image_once: bool = False,
) -> DataLoader:
    """In order. `each_image_once`: under distributed evaluation every image goes to exactly one process (a summed
    confusion matrix must count each once); otherwise Lightning's sampler may repeat a few images to even out the
    processes (results keyed by image id do not mind)."""
    sampler = None
    if each_image_once and torch.distributed.is_available() and torch.distributed.is_initialized():
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        generator=_generator(),
    )
