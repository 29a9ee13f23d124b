"""Random augmentation that is reproducible per sample, so a resumed run augments exactly as an uninterrupted one.

Training samplers (`mobilevision.data.sampler.ResumableSampler`) hand datasets keys `(index, seed)`, the seed drawn
from (run seed, epoch, position in the epoch). Datasets pass the key through a `TransformSeeder`, which seeds the
albumentations pipeline with it before the sample is transformed. Given a plain `index` (a DataLoader with another
sampler), the seeder falls back to one seed per worker process from torch's per-worker seed: albumentations keeps its
own generator, which forked workers would otherwise all copy and replay identically.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import get_worker_info

SampleKey = int | tuple[int, int]


class TransformSeeder:
    """Seeds a transform for each sample key; returns the dataset index of the key."""

    def __init__(self) -> None:
        self._seeded_for: tuple[int, int] | None = None  # (pid, worker id) of the last per-worker seeding

    def __call__(self, transform: Any, key: SampleKey) -> int:
        set_seed = getattr(transform, "set_random_seed", None)
        if isinstance(key, tuple):
            index, seed = key
            if set_seed is not None:
                set_seed(int(seed) % 2**32)
            return int(index)
        if set_seed is not None:
            info = get_worker_info()
            worker = (os.getpid(), info.id if info is not None else -1)
            if self._seeded_for != worker:
                set_seed((info.seed if info is not None else torch.initial_seed()) % 2**32)
                self._seeded_for = worker
        return int(key)
