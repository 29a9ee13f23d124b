"""`mobilevision data check` for segmentation sets: PASCAL VOC 2012 and train_aug (the task table's checker)."""

from __future__ import annotations

import argparse

from mobilevision.data.report import DefectReport
from mobilevision.errors import UserError


def check_voc(args: argparse.Namespace) -> DefectReport:
    """A VOC segmentation split (`--root VOCdevkit|VOC2012 --split S`, `train_aug` included), decoded through
    `VOCSegmentation`, the reader training uses."""
    from pathlib import Path

    from mobilevision.tasks.segmentation.data import check_voc_segmentation

    if not args.root or not args.split:
        raise UserError("--format voc-seg needs --root DIR and --split S")
    return check_voc_segmentation(Path(args.root), args.split)


def check_folder(args: argparse.Namespace) -> DefectReport:
    """An images + masks folder pair (`--images DIR --masks DIR`, or `--root DIR` holding `image(s)/` and
    `mask(s)/` or `label(s)/`, directly or in one sub-folder), decoded through `FolderSegmentation`."""
    from pathlib import Path

    from mobilevision.tasks.segmentation.data.folder import FolderSegmentation

    images, masks = args.images, getattr(args, "masks", None)
    if not (images and masks) and args.root:
        root = Path(args.root)
        for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            found_images = next((base / n for n in ("images", "image", "img") if (base / n).is_dir()), None)
            found_masks = next((base / n for n in ("masks", "mask", "labels", "label") if (base / n).is_dir()), None)
            if found_images and found_masks:
                images, masks = str(found_images), str(found_masks)
                break
    if not images or not masks:
        raise UserError("--format seg-folder needs --images DIR --masks DIR, or --root DIR holding images/ and masks/")
    print(f"images: {images}\nmasks: {masks}")
    dataset = FolderSegmentation(images, masks)
    return dataset.check()
