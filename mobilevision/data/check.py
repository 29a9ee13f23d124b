"""`mobilevision data check`: read a whole dataset through the reader training uses, decoding every image, and report
what it skipped, dropped and clipped.

    mobilevision data check --format coco --images DIR --annotations FILE [--json]
    mobilevision data check --format voc-det --root DIR --split S [--year 2007 ...] [--json]
    mobilevision data check --format voc-seg --root DIR --split S [--json]

A structural defect (malformed JSON, unknown image or category id, missing split file) is an error (exit 2) naming
the file and entry; per-sample defects are listed in the report (exit 0).
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilevision.data.report import DataWarning, DefectReport
from mobilevision.errors import UserError


def read_all(dataset: Any) -> DefectReport:
    """Fetch every sample of a dataset with a `.report` (the same `__getitem__` a DataLoader calls) and return it.

    The per-sample warnings are silenced: the report lists each skipped file once.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for index in range(len(dataset)):
            dataset[index]
    return dataset.report


def check_coco(images: str | os.PathLike[str], annotations: str | os.PathLike[str]) -> DefectReport:
    """Check a COCO-format detection set (images folder + json)."""
    from mobilevision.tasks.detection.data import CocoDetection

    return read_all(CocoDetection(images, annotations))


def check_voc_detection(
    root: str | os.PathLike[str], split: str, *, years: Sequence[str] | None = None
) -> DefectReport:
    """Check a VOC detection split (a VOCdevkit folder or one year's folder)."""
    from mobilevision.tasks.detection.data import VOCDetection

    return read_all(VOCDetection(root, split, years=years))


def check_voc_segmentation(root: str | os.PathLike[str], split: str) -> DefectReport:
    """Check a VOC segmentation split; the segmentation task owns that reader."""
    from mobilevision.tasks.segmentation.data import check_voc_segmentation as check

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return check(Path(root), split)


def main(argv: Sequence[str]) -> int:
    """Check a dataset: the counts, then one line per skipped file (or JSON with --json)."""
    parser = argparse.ArgumentParser(prog="mobilevision data check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--format", required=True, choices=("coco", "voc-det", "voc-seg"))
    parser.add_argument("--images", help="coco: the image folder")
    parser.add_argument("--annotations", help="coco: the annotations json")
    parser.add_argument("--root", help="voc-det / voc-seg: VOCdevkit or VOC20xx folder")
    parser.add_argument("--split", help="voc-det / voc-seg: split name (train, val, trainval, test)")
    parser.add_argument("--year", action="append", help="voc-det under a VOCdevkit: year(s) to read (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(list(argv))
    if args.format == "coco":
        if not args.images or not args.annotations:
            raise UserError("--format coco needs --images DIR and --annotations FILE")
        report = check_coco(args.images, args.annotations)
    else:
        if not args.root or not args.split:
            raise UserError(f"--format {args.format} needs --root DIR and --split S")
        if args.format == "voc-det":
            report = check_voc_detection(args.root, args.split, years=args.year)
        else:
            report = check_voc_segmentation(args.root, args.split)
    print(report.to_json() if args.json else report.format_table())
    return 0
