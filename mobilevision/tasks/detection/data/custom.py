"""One way into a user's detection folder: `detect_format` says which format a folder holds, `open_custom` reads it
into train / val (/ test) datasets, from the format's own splits (YOLO's yaml, Roboflow's split folders), list files,
or a deterministic split by file name (`mobilevision.data.name_split`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mobilevision.data.name_split import read_name_list, split_names
from mobilevision.errors import DatasetError, InvalidValueError
from mobilevision.tasks.detection.data.coco_tools import ROBOFLOW_SPLITS, ToolCocoDetection, find_coco_json
from mobilevision.tasks.detection.data.listed import ListedDetection
from mobilevision.tasks.detection.data.voc_folder import XML_FOLDERS, VOCFolderDetection
from mobilevision.tasks.detection.data.yolo import YOLODetection, find_yaml

FORMATS = ("voc", "yolo", "coco")


def detect_format(root: str | os.PathLike[str]) -> str:
    """`"yolo"` (a data.yaml, or a *.yaml with `names`), `"coco"` (a *.json in root or in a split folder under it) or
    `"voc"` (*.xml in root or in an annotations folder), looked for in that order.

    Raises:
        DatasetError: not a folder, or none of them found (listing what was looked for).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if find_yaml(root) is not None:
        return "yolo"
    if find_coco_json(root) is not None:
        return "coco"
    if any(root.glob("*.xml")) or any(any((root / n).glob("*.xml")) for n in XML_FOLDERS):
        return "voc"
    if _split_folder(root, "train") is not None:
        return "voc"
    raise DatasetError(
        f"{root}: no detection format found; looked for YOLO (data.yaml or a *.yaml with 'names'), COCO (*.json in "
        f"it or in train/ valid/ test/), VOC XML (*.xml in it or in {', '.join(f'{n}/' for n in XML_FOLDERS)}, "
        "or in train/ val/ under it); "
        "or give format: voc|yolo|coco"
    )


@dataclass
class CustomSplits:
    """The datasets of a user folder (no transforms yet: `select` them) and how they were split."""

    format: str
    train: ListedDetection
    val: ListedDetection
    test: ListedDetection | None
    how: str  # "yaml", "folders", "lists" or the name rule ("hash 0.2", "every_5th")


def open_custom(
    root: str | os.PathLike[str],
    *,
    format: str = "auto",
    names: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    split: str = "hash",
    train_list: str | None = None,
    val_list: str | None = None,
) -> CustomSplits:
    """Read a user folder and split it.

    Args:
        format: "voc", "yolo", "coco" or "auto" (`detect_format`).
        names: the class list, to fix its order (VOC XML: any subset order; YOLO: renames the yaml's).
        val_fraction, split: the name rule ("hash" or "every_5th") when the data has no splits of its own.
        train_list, val_list: list files of file names (relative to the images folder) instead of a rule.

    Raises:
        DatasetError: structure, an empty split; InvalidValueError: an unknown format.
    """
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt not in FORMATS:
        raise InvalidValueError(f"format {format!r} is not one of {('auto', *FORMATS)}")
    test = None
    if fmt == "yolo":
        train, val = YOLODetection(root, "train", names=names), YOLODetection(root, "val", names=names)
        try:
            test = YOLODetection(root, "test", names=names)
        except DatasetError as error:
            if "no 'test' split" not in str(error):
                raise
        return CustomSplits(fmt, train, val, test, "yaml")
    per_split = {s: _split_json(root, s) for s in ("train", "val", "test")}
    if fmt == "coco" and per_split["train"] is not None and per_split["val"] is not None:  # Roboflow's folders
        train, val = ToolCocoDetection(per_split["train"]), ToolCocoDetection(per_split["val"])
        test = ToolCocoDetection(per_split["test"]) if per_split["test"] is not None else None
        return CustomSplits(fmt, train, val, test, "folders")
    folders = {s: _split_folder(root, s) for s in ("train", "val", "test")}
    if fmt == "voc" and folders["train"] is not None and folders["val"] is not None:  # train/ val/ [test/] folders
        found = [f for f in folders.values() if f is not None]
        if names is None:  # one class list for every split: the names of all of them, sorted
            names = sorted({n for f in found for n in VOCFolderDetection(f).meta.class_names[1:]})
        train, val = VOCFolderDetection(folders["train"], names=names), VOCFolderDetection(folders["val"], names=names)
        test = VOCFolderDetection(folders["test"], names=names) if folders["test"] is not None else None
        return CustomSplits(fmt, train, val, test, "folders")
    if fmt == "coco":
        json_path = find_coco_json(root)
        assert json_path is not None
        full: ListedDetection = ToolCocoDetection(json_path, root if json_path.parent == root else json_path.parent)
    else:
        full = VOCFolderDetection(root, names=names)
    if train_list or val_list:
        if not (train_list and val_list):
            raise InvalidValueError("give both train_list and val_list, or neither")
        train_names, val_names, how = read_name_list(train_list), read_name_list(val_list), "lists"
    else:
        train_names, val_names = split_names(full.file_names, val_fraction=val_fraction, rule=split)
        how = f"hash {val_fraction}" if split == "hash" else split
    return CustomSplits(fmt, full.select(train_names), full.select(val_names), None, how)


def _split_json(root: Path, split: str) -> Path | None:
    """The json of a Roboflow-style split folder (`train/`, `valid/`, `test/`), None when absent."""
    for folder in ROBOFLOW_SPLITS[split]:
        found = sorted((root / folder).glob("*.json")) if (root / folder).is_dir() else []
        if found:
            return found[0]
    return None


def _split_folder(root: Path, split: str) -> Path | None:
    """A per-split folder of VOC XML (`train/`, `val/` or `valid/`, `test/`, each in any VOC-XML layout)."""
    for folder in ROBOFLOW_SPLITS[split]:
        candidate = root / folder
        if candidate.is_dir() and (
            any(candidate.glob("*.xml")) or any(any((candidate / n).glob("*.xml")) for n in XML_FOLDERS)
        ):
            return candidate
    return None
