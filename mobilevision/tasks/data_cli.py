"""`mobilevision data shapes|check|to-coco`: generate the synthetic shapes set, check a dataset through the reader
training uses, write a VOC detection split as COCO-format ground truth.

    mobilevision data check --format FORMAT [--images DIR --annotations FILE | --root DIR --split S [--year Y ...]]
    mobilevision data check --root DIR [--format auto|voc|yolo|coco]   (a user's folder, any layout)

`check` reads the whole dataset, decoding every image, and reports what it skipped, dropped and clipped. The formats
are those the task table's entries declare (`Task.checkers`); each checker builds the dataset exactly as training
does. A structural defect (malformed JSON, unknown image or category id, missing split file) is an error (exit 2)
naming the file and entry; per-sample defects are listed in the report (exit 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mobilevision.subcommands import dispatch
from mobilevision.tasks.table import TASKS, load

TABLE = {
    "shapes": ("mobilevision.data.shapes", "main"),
    "check": ("mobilevision.tasks.data_cli", "check_main"),
    "to-coco": ("mobilevision.tasks.detection.data", "to_coco_main"),
}


def checkers() -> dict[str, str]:
    """`data check` format -> checker import path, from every task of the table."""
    return {fmt: path for task in TASKS.values() for fmt, path in task.checkers.items()}


def check_main(argv: Sequence[str]) -> int:
    """Check a dataset: the counts, then one line per skipped file (or JSON with --json)."""
    formats = checkers()
    parser = argparse.ArgumentParser(
        prog="mobilevision data check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--format",
        choices=sorted({*formats, "auto", "voc", "yolo"}),
        help="default with --root: auto (a detection folder: VOC XML, YOLO or COCO, found by detect_format)",
    )
    parser.add_argument("--images", help="coco: the image folder")
    parser.add_argument("--annotations", help="coco: the annotations json")
    parser.add_argument("--masks", help="seg-folder: the masks folder (beside --images)")
    parser.add_argument("--root", help="voc-det / voc-seg: VOCdevkit or VOC20xx folder")
    parser.add_argument("--split", help="voc-det / voc-seg: split name (train, val, trainval, test, train_aug)")
    parser.add_argument("--year", action="append", help="voc-det under a VOCdevkit: year(s) to read (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(list(argv))
    fmt = args.format or ("auto" if args.root else None)
    if fmt is None:
        parser.error("give --format, or --root DIR for a folder whose format is detected")
    if fmt in ("auto", "voc", "yolo") or (fmt == "coco" and args.root and not args.annotations):
        args.detection_format, fmt = (None if fmt == "auto" else fmt), "detection"
    report = load(formats[fmt])(args)
    print(report.to_json() if args.json else report.format_table())
    return 0


def main(argv: Sequence[str]) -> int:
    return dispatch("data", TABLE, argv)
