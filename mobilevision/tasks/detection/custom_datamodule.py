"""`CustomDetectionDataModule`: a user's own detection folder (VOC XML in any layout, YOLO, COCO from a labelling
tool), its format detected, its split made deterministically and written into the run folder.

    mobilevision fit -c ssdlite_mobilenetv2_custom --data.init_args.root DIR [--data.init_args.format voc|yolo|coco]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilevision.data.name_split import write_split_lists
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.custom import open_custom
from mobilevision.tasks.detection.datamodule import DetectionDataModule


class CustomDetectionDataModule(DetectionDataModule):
    """A user's detection folder.

    Args:
        root: the dataset folder.
        format: "auto" (default: `detect_format`), "voc", "yolo" or "coco".
        names: the class list, to fix its order (default: from the data).
        val_fraction: share of file names held out when the data has no splits of its own (`split: hash`).
        split: "hash" (by a hash of each file name: stable when files are added) or "every_5th" (sorted names,
            every fifth held out: the fixed 80/20 split of the kangaroo numbers).
        train_list, val_list: list files of file names instead (relative to the images folder).
        split_dir: where `train.txt` / `val.txt` of the split used are written (default: the trainer's log folder,
            at setup).
        keep_difficult: train on difficult / crowd objects too.
        input_size, batch_size, num_workers, augment: as `DetectionDataModule`.

    The data is read (structure checked, class list known) at construction, before any model is built; it prints
    the format found, the class list and the split.
    """

    def __init__(
        self,
        *,
        root: str,
        format: str = "auto",
        names: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        split: str = "hash",
        train_list: str | None = None,
        val_list: str | None = None,
        split_dir: str | None = None,
        keep_difficult: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not root or not Path(root).is_dir():
            raise DatasetError(f"CustomDetectionDataModule: root {root!r} is not a folder; set --data.init_args.root")
        self.splits = open_custom(
            root,
            format=format,
            names=list(names) if names is not None else None,
            val_fraction=val_fraction,
            split=split,
            train_list=train_list,
            val_list=val_list,
        )
        self.keep_difficult = keep_difficult
        self.splits.train.keep_difficult = keep_difficult  # `select` reads with it
        self.split_dir = split_dir
        self.meta = self.splits.train.meta
        if self.splits.val.meta.class_names != self.meta.class_names:
            raise DatasetError(
                f"{root}: the val split's classes {self.splits.val.meta.class_names[1:]} differ from the train "
                f"split's {self.meta.class_names[1:]}"
            )
        print(self.describe())

    def describe(self) -> str:
        """One line: the format found, the class list, the split and its sizes."""
        s = self.splits
        test = f", test {len(s.test)}" if s.test is not None else ""
        return (
            f"data: format {s.format}, classes {self.meta.class_names[1:]}, split {s.how}: "
            f"train {len(s.train)}, val {len(s.val)}{test} images"
        )

    def _write_splits(self) -> None:
        folder = self.split_dir
        if folder is None and getattr(self, "trainer", None) is not None:
            folder = self.trainer.log_dir or self.trainer.default_root_dir
        if folder is None:
            return
        lists = {"train": self.splits.train.file_names, "val": self.splits.val.file_names}
        if self.splits.test is not None:
            lists["test"] = self.splits.test.file_names
        write_split_lists(Path(folder) / "splits", lists)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            self._write_splits()
            self.train_dataset = self.splits.train.select(
                self.splits.train.file_names, transforms=self.train_transforms()
            )
        if stage in ("fit", "validate") and self.val_dataset is None:
            self.val_dataset = self.splits.val.select(self.splits.val.file_names, transforms=self.eval_transforms())
        if stage == "test" and self.test_dataset is None:
            chosen = self.splits.test or self.splits.val
            self.test_dataset = chosen.select(chosen.file_names, transforms=self.eval_transforms())
