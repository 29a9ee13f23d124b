"""What every dataset reader shares, whatever its task: the defect report, bad samples skipped (a warning each time
one is read, recorded once), counts made once per sample however many epochs read it, images read in the frame their
annotation states, and per-sample seeding of the augmentation (exact resume)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mobilevision.data.decode import read_image_in_frame
from mobilevision.data.report import DataWarning, DefectReport
from mobilevision.data.seeding import SampleKey, TransformSeeder


class ReportingDataset(Dataset):
    """Base of the dataset readers. Subclasses call `_init_reporting()` in their constructor."""

    report: DefectReport

    def _init_reporting(self, report: DefectReport | None = None) -> None:
        self.report = report if report is not None else DefectReport()
        self._skipped: set[int] = set()
        self._counted: set[tuple[int, str]] = set()
        self._seeder = TransformSeeder()

    def sample_index(self, transform: Any, key: SampleKey) -> int:
        """The index of `key` (an index, or `(index, seed)` from a training sampler), with `transform`'s random
        draws seeded for that sample."""
        return self._seeder(transform, key)

    def skip_sample(self, index: int, file: str, reason: str) -> None:
        """Warn that sample `index` (`file`) is skipped and why; the report records it once, however many epochs
        ask for it."""
        warnings.warn(f"skipping {file}: {reason}", DataWarning, stacklevel=3)
        if index not in self._skipped:
            self._skipped.add(index)
            self.report.skip(file, reason, warn=False)

    def count_once(self, index: int, key: str, n: int = 1) -> None:
        """Add `n` to the report's counter `key` for sample `index`, the first time only."""
        if (index, key) not in self._counted:
            self._counted.add((index, key))
            self.report.count(key, n)

    def read_image(self, index: int, path: str | os.PathLike[str], stated_size: tuple[int, int] | None) -> np.ndarray:
        """Decode sample `index`'s image in the frame its annotation states (`read_image_in_frame`); an EXIF
        orientation left unapplied for that is counted once as `exif_frame_kept`.

        Raises:
            BadSample: the file cannot be used.
        """
        image, frame_kept = read_image_in_frame(path, stated_size)
        if frame_kept:
            self.count_once(index, "exif_frame_kept")
        return image
