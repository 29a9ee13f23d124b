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
