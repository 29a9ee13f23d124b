"""PASCAL VOC 2012 segmentation and the augmented training set (SBD `.mat` files or `SegmentationClassAug`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.labels import VOC_CLASSES, with_background
from mobilevision.data.report import DataWarning, DefectReport
from mobilevision.data.splits import id_images, read_id_list
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data.base import SegmentationDataset, Transform, _Sample


def _resolve_voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(
        f"{root}: not a PASCAL VOC 2012 folder: expected {root / 'JPEGImages'} (root = VOCdevkit/VOC2012) or "
        f"{root / 'VOC2012' / 'JPEGImages'} (root = VOCdevkit); neither exists"
    )


def check_voc_layout(root: str | os.PathLike[str], split: str) -> Path:
    """Check, without reading any image, that `root` is a VOC 2012 folder with masks and the list for `split`.

    DataModules call it at construction so a wrong root is one message before any model is built; returns the
    VOC2012 folder. `train_aug` needs more (SBD); `VOCSegmentation` checks that when it reads the lists.
    """
    if not root:
        raise DatasetError("the VOC root is empty; set --data.init_args.root to a VOCdevkit or VOC2012 folder")
    voc = _resolve_voc_root(Path(root))
    if split != "train_aug":
        if not (voc / "SegmentationClass").is_dir():
            raise DatasetError(f"{voc / 'SegmentationClass'}: mask folder not found (VOCdevkit/VOC2012 layout)")
        if not (voc / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
            raise DatasetError(f"{voc / 'ImageSets' / 'Segmentation' / f'{split}.txt'}: split list not found")
    return voc


def _resolve_sbd_root(path: Path) -> Path | None:
    """The SBD `dataset` folder (holding `cls/`) for `path` = benchmark_RELEASE or benchmark_RELEASE/dataset."""
    for candidate in (path, path / "dataset"):
        if (candidate / "cls").is_dir():
            return candidate
    return None


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 segmentation: `JPEGImages/*.jpg`, `SegmentationClass/*.png`, `ImageSets/Segmentation/S.txt`.

    Args:
        root: the `VOCdevkit/VOC2012` folder, or the `VOCdevkit` folder holding it.
        split: a list in `ImageSets/Segmentation` (`train`, `val`, `trainval`, ...) or `train_aug`: VOC train plus
            the augmented set (SBD train+val, or the `SegmentationClassAug` PNGs listed by `train_aug.txt`), minus
            every VOC val image. VOC's own mask is used when an id has one, the augmented mask otherwise.
        transform: albumentations-style callable (`train_transforms()`, `eval_transforms()`), or None.
        num_classes: C; mask labels must be 0..C-1 or 255.
        sbd_root: `benchmark_RELEASE` (or its `dataset` folder) for `train_aug`. When None, `SegmentationClassAug` +
            `train_aug.txt` is used if present, else a `benchmark_RELEASE` next to VOCdevkit, VOCdevkit or VOC2012.
        with_orig_size: return `(image, mask, (h, w))`; see the module docstring.
    """

    AUG_LISTS = (
        "ImageSets/Segmentation/train_aug.txt",
        "ImageSets/Segmentation/trainaug.txt",
        "ImageSets/Segmentation/aug.txt",
        "train_aug.txt",
        "SegmentationClassAug/train_aug.txt",
    )

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Transform | None = None,
        *,
        num_classes: int = 21,
        sbd_root: str | os.PathLike[str] | None = None,
        with_orig_size: bool = False,
    ) -> None:
        if num_classes < 2 or num_classes > 255:
            raise ValueError(f"num_classes must be in 2..255 (255 is void), got {num_classes}")
        voc = _resolve_voc_root(Path(root))
        super().__init__(root=voc, transform=transform, with_orig_size=with_orig_size)
        self.split = split
        voc_names = with_background(VOC_CLASSES)
        self.class_names = voc_names[:num_classes] + [f"class_{i}" for i in range(len(voc_names), num_classes)]
        lists = voc / "ImageSets" / "Segmentation"
        if split == "train_aug":
            entries = self._train_aug_entries(voc, Path(sbd_root) if sbd_root is not None else None)
        else:
            if not (voc / "SegmentationClass").is_dir():
                raise DatasetError(f"{voc / 'SegmentationClass'}: mask folder not found (VOCdevkit/VOC2012 layout)")
            ids = read_id_list(lists / f"{split}.txt")
            entries = [(i, id_images(voc / "JPEGImages", i), [voc / "SegmentationClass" / f"{i}.png"]) for i in ids]
        self._add_entries(entries, list_name=split if split == "train_aug" else f"ImageSets/Segmentation/{split}.txt")

    def _add_entries(self, entries: Iterable[tuple[str, list[Path], list[Path]]], *, list_name: str) -> None:
        """Keep entries whose image and mask exist (first existing candidate of each); skip and name the others."""
        for id_, images, masks in entries:
            self.report.images += 1
            try:
                resolve_inside(self.root / "JPEGImages", f"{id_}.jpg")  # an id like ../../x must not leave the root
            except BadSample as error:
                self.report.skip(id_, f"invalid id in {list_name}: {error.reason}")
                continue
            image = next((p for p in images if p.is_file()), None)
            if image is None:
                self._skip_at_construction(images[0], f"image file not found (id listed in {list_name})")
                continue
            mask = next((p for p in masks if p.is_file()), None)
            if mask is None:
                self._skip_at_construction(masks[0], f"mask file not found (id listed in {list_name})")
                continue
            self.samples.append(_Sample(id=id_, image=image, mask=mask))

    def _train_aug_entries(self, voc: Path, sbd_root: Path | None) -> list[tuple[str, list[Path], list[Path]]]:
        lists = voc / "ImageSets" / "Segmentation"
        train_ids = read_id_list(lists / "train.txt")
        val_ids = set(read_id_list(lists / "val.txt"))  # required: without it we cannot prove val stays out
        own_masks = voc / "SegmentationClass"

        aug_list = next((voc / p for p in self.AUG_LISTS if (voc / p).is_file()), None)
        sbd: Path | None = None
        if sbd_root is not None:
            sbd = _resolve_sbd_root(sbd_root)
            if sbd is None:
                raise DatasetError(
                    f"{sbd_root}: not an SBD folder: expected {sbd_root / 'dataset' / 'cls'} or "
                    f"{sbd_root / 'cls'} (benchmark_RELEASE layout)"
                )
        elif aug_list is None or not (voc / "SegmentationClassAug").is_dir():
            for base in (voc.parent.parent, voc.parent, voc):
                sbd = _resolve_sbd_root(base / "benchmark_RELEASE")
                if sbd is not None:
                    break
            if sbd is None:
                raise DatasetError(
                    f"{voc}: train_aug needs SBD or SegmentationClassAug: expected {voc / 'SegmentationClassAug'} "
                    f"with {voc / self.AUG_LISTS[0]}, or benchmark_RELEASE/dataset/cls next to VOCdevkit "
                    "(or pass sbd_root)"
                )

        aug_ids: list[str] = []
        if sbd is not None:
            found = [sbd / name for name in ("train.txt", "val.txt") if (sbd / name).is_file()]
            if not found:
                raise DatasetError(f"{sbd}: SBD split lists train.txt and val.txt not found")
            for path in found:
                aug_ids += read_id_list(path)
            aug_mask_dir, aug_mask_suffix, extra_images = sbd / "cls", ".mat", [sbd / "img"]
        else:
            assert aug_list is not None
            aug_ids = read_id_list(aug_list)
            aug_mask_dir, aug_mask_suffix, extra_images = voc / "SegmentationClassAug", ".png", []

        entries: dict[str, tuple[str, list[Path], list[Path]]] = {}
        excluded = 0
        for id_ in [*train_ids, *aug_ids]:
            if id_ in val_ids:
                excluded += 1  # VOC val is the evaluation set: never train on it, whatever the aug list says
                continue
            if id_ not in entries:
                images = [*id_images(voc / "JPEGImages", id_), *(folder / f"{id_}.jpg" for folder in extra_images)]
                masks = [own_masks / f"{id_}.png", aug_mask_dir / f"{id_}{aug_mask_suffix}"]
                entries[id_] = (id_, images, masks)
        if excluded:
            self.report.count("val_images_excluded", excluded)
        return list(entries.values())


def check_voc_segmentation(root: Path, split: str, *, num_classes: int = 21) -> DefectReport:
    """Read every sample of a VOC split through `VOCSegmentation` (the training code path) and return the report.

    Warnings are silenced: the report lists every skipped file and reason. Used by `mobilevision data check
    --format voc-seg`. Raises `DatasetError` for a structural problem (layout, missing split list).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VOCSegmentation(root, split, num_classes=num_classes)
        return dataset.check()


# The public name, for the readers of other task packages (the joint model's).
resolve_sbd_root = _resolve_sbd_root
