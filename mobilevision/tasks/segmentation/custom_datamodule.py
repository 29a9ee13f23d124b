"""`CustomSegmentationDataModule`: an images folder and a masks folder (see `data.folder.FolderSegmentation`), split
deterministically by image file name and the split written into the run folder.

    mobilevision fit -c deeplabv3_mobilenetv2_custom --data.init_args.images DIR --data.init_args.masks DIR
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilevision.data.name_split import read_name_list, split_names, write_split_lists
from mobilevision.errors import InvalidValueError
from mobilevision.tasks.segmentation.data.folder import FolderSegmentation
from mobilevision.tasks.segmentation.datamodule import SegmentationDataModule


class CustomSegmentationDataModule(SegmentationDataModule):
    """Images + masks folders.

    Args:
        images, masks: the folders (pairs matched by file stem).
        names, classes_file, colors, mask_mode, ignore_index: as `FolderSegmentation`.
        val_fraction, split: "hash" (a hash of each file name, stable when files are added) or "every_5th".
        train_list, val_list: list files of image file names instead.
        split_dir: where `splits/train.txt`, `splits/val.txt` go (default: the trainer's log folder, at setup).
        input_size, scale, batch_size, num_workers, eval_multiple, eval_batch_size: as `SegmentationDataModule`.
    """

    def __init__(
        self,
        *,
        images: str,
        masks: str,
        names: Sequence[str] | None = None,
        classes_file: str | None = None,
        colors: Sequence[Sequence[int]] | None = None,
        mask_mode: str = "auto",
        ignore_index: int = 255,
        val_fraction: float = 0.2,
        split: str = "hash",
        train_list: str | None = None,
        val_list: str | None = None,
        split_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.options: dict[str, Any] = dict(
            names=list(names) if names is not None else None,
            classes_file=classes_file,
            colors=colors,
            mask_mode=mask_mode,
            ignore_index=ignore_index,
        )
        self.images, self.masks, self.split_dir = images, masks, split_dir
        full = FolderSegmentation(images, masks, **self.options)  # structure checked before any model is built
        self.options.update(mask_mode=full.mask_mode, names=full.class_names)
        self.class_names = full.class_names
        if train_list or val_list:
            if not (train_list and val_list):
                raise InvalidValueError("give both train_list and val_list, or neither")
            self.split_files, how = (read_name_list(train_list), read_name_list(val_list)), "lists"
        else:
            self.split_files = split_names(full.file_names, val_fraction=val_fraction, rule=split)
            how = f"hash {val_fraction}" if split == "hash" else split
        print(
            f"data: images + masks ({full.mask_mode} masks), classes {self.class_names}, split {how}: "
            f"train {len(self.split_files[0])}, val {len(self.split_files[1])} images"
        )

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_dataset is None:
            folder = self.split_dir
            if folder is None and getattr(self, "trainer", None) is not None:
                folder = self.trainer.log_dir or self.trainer.default_root_dir
            if folder is not None:
                write_split_lists(Path(folder) / "splits", {"train": self.split_files[0], "val": self.split_files[1]})
            self.train_dataset = self._dataset(self.split_files[0], self.train_transforms())
        if self.val_dataset is None:
            self.val_dataset = self._dataset(self.split_files[1], self.eval_transforms())

    def _dataset(self, files: Sequence[str], transform: Any) -> FolderSegmentation:
        return FolderSegmentation(self.images, self.masks, files=files, transform=transform, **self.options)
