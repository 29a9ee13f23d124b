"""The defect report: what a dataset reader skipped, dropped or clipped, and why."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class DataWarning(UserWarning):
    """A sample was skipped or repaired; the message names the file and the reason."""


@dataclass
class DefectReport:
    """Counts of one pass over a dataset. `skipped` lists `{file, reason}` for every unusable image.

    Task readers may add their own counters to `extra` (e.g. `dropped_boxes`); `to_dict` flattens them in.
    """

    images: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped_images(self) -> int:
        return len(self.skipped)

    @property
    def usable_images(self) -> int:
        return self.images - self.skipped_images

    def skip(self, file: str, reason: str, *, warn: bool = True) -> None:
        """Record an unusable image and, by default, warn with its name and the reason."""
        self.skipped.append({"file": str(file), "reason": reason})
        if warn:
            warnings.warn(f"skipping {file}: {reason}", DataWarning, stacklevel=2)

    def count(self, key: str, n: int = 1) -> None:
        self.extra[key] = self.extra.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images": self.images,
            "usable_images": self.usable_images,
            "skipped_images": self.skipped_images,
        }
        out.update(self.extra)
        out["skipped"] = list(self.skipped)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        """A human-readable summary: counters first, then one line per skipped file."""
        data = self.to_dict()
        skipped = data.pop("skipped")
        width = max(len(k) for k in data)
        lines = [f"{key:<{width}}  {value}" for key, value in data.items() if not isinstance(value, list)]
        for key, value in data.items():  # line lists (a reader's notes): one line each
            if isinstance(value, list):
                lines += ["", f"{key}:"] + [f"  {item}" for item in value]
        if skipped:
            lines.append("")
            lines.append("skipped:")
            lines += [f"  {item['file']}: {item['reason']}" for item in skipped]
        return "\n".join(lines)


def read_all(make_dataset: Callable[[], Any]) -> DefectReport:
    """Build a dataset with a `.report` and fetch every sample through its `__getitem__` (what a DataLoader calls),
    then return the report: what `mobilevision data check` prints. The per-sample warnings are silenced (the
    report lists each skipped file once), from construction on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = make_dataset()
        for index in range(len(dataset)):
            dataset[index]
    return dataset.report
