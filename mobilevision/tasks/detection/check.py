"""`mobilevision data check` for detection sets: COCO-format json + images, PASCAL VOC (the task table's checkers)."""

from __future__ import annotations

import argparse

from mobilevision.data.report import DefectReport, read_all
from mobilevision.errors import UserError


def check_coco(args: argparse.Namespace) -> DefectReport:
    """A COCO-format detection set (`--images DIR --annotations FILE`), read as `CocoDetection` reads it."""
    from mobilevision.tasks.detection.data import CocoDetection

    if not args.images or not args.annotations:
        raise UserError("--format coco needs --images DIR and --annotations FILE")
    return read_all(lambda: CocoDetection(args.images, args.annotations))


def check_voc(args: argparse.Namespace) -> DefectReport:
    """A VOC detection split (`--root VOCdevkit|VOC20xx --split S [--year Y]`), read as `VOCDetection` reads it."""
    from mobilevision.tasks.detection.data import VOCDetection

    if not args.root or not args.split:
        raise UserError("--format voc-det needs --root DIR and --split S")
    return read_all(lambda: VOCDetection(args.root, args.split, years=args.year))


def check_custom(args: argparse.Namespace) -> DefectReport:
    """A user's detection folder (`--root DIR [--format voc|yolo|coco]`, `--format auto` by default), every split
    read as `CustomDetectionDataModule` reads it: one report over all its images."""
    from pathlib import Path

    from mobilevision.data.report import DefectReport
    from mobilevision.errors import DatasetError
    from mobilevision.tasks.detection.data.custom import detect_format, open_custom

    if not args.root:
        raise UserError("--format detection needs --root DIR (and optionally --detection-format voc|yolo|coco)")
    try:
        fmt = getattr(args, "detection_format", None) or detect_format(args.root)
    except DatasetError as error:
        root = Path(args.root)
        if any((d / "image").is_dir() or (d / "images").is_dir() for d in [root, *root.glob("*")]):
            raise DatasetError(f"{error}; for an images + masks folder use --format seg-folder") from None
        raise
    print(f"format: {fmt}")
    reports = []
    splits = open_custom(args.root, format=fmt)
    for dataset in (splits.train, splits.val, splits.test):
        if dataset is not None:
            reports.append(read_all(lambda d=dataset: d.select(d.file_names)))
    merged = DefectReport(images=sum(r.images for r in reports))
    for report in reports:
        merged.skipped += report.skipped
        for key, value in report.extra.items():
            if isinstance(value, int) and key != "object_classes":
                merged.extra[key] = merged.extra.get(key, 0) + value
            else:
                merged.extra.setdefault(key, value)
    merged.extra["split"] = f"{splits.how}: train {len(splits.train)}, val {len(splits.val)}"
    return merged
