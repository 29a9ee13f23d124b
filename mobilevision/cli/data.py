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
from pathlib import Path

from mobilevision.cli.dispatch import dispatch
from mobilevision.tasks.table import TASKS, load

TABLE = {
    "shapes": ("mobilevision.data.shapes", "main", "generate the synthetic shapes set (images, COCO json, masks)"),
    "check": ("mobilevision.cli.data", "check_main", "read a whole dataset as training does and report its defects"),
    "to-coco": ("mobilevision.cli.data", "to_coco_main", "write a VOC detection split as COCO-format ground truth"),
    "convert": ("mobilevision.cli.data", "convert_main", "write a detection folder as COCO json, YOLO or VOC XML"),
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


def to_coco_main(argv: Sequence[str]) -> int:
    """`mobilevision data to-coco --root VOCdevkit --split test [--year 2007] --out gt.json`.

    The ground truth validation scores a VOC split against (difficult objects as COCO crowd regions, which COCOeval
    ignores, as the VOC protocol does), as a COCO json whose `file_name`s are relative to `--root`. Then
    `mobilevision predict --source ROOT --annotations gt.json` predicts on exactly that split with its ids, and
    `mobilevision evaluate detection --gt gt.json` scores what `validate` scores.
    """
    from mobilevision.io import atomic_write_json
    from mobilevision.tasks.detection.data.voc_coco import voc_split_as_coco

    parser = argparse.ArgumentParser(
        prog="mobilevision data to-coco",
        description=to_coco_main.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="VOCdevkit (or one VOC20xx folder)")
    parser.add_argument("--split", required=True, help="split name in ImageSets/Main (train, val, trainval, test)")
    parser.add_argument(
        "--year", action="append", help="year(s) under a VOCdevkit (repeatable; default: every year that has the split)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the COCO json to write")
    args = parser.parse_args(list(argv))
    data = voc_split_as_coco(args.root, args.split, years=args.year)
    atomic_write_json(args.out, data, indent=None)
    print(
        f"wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} objects "
        f"({sum(a['iscrowd'] for a in data['annotations'])} difficult, kept as crowd), "
        f"{len(data['categories'])} classes"
    )
    return 0


def convert_main(argv: Sequence[str]) -> int:
    """`mobilevision data convert --from auto|voc|yolo|coco --to coco|yolo|voc --root DIR --out DST`.

    Reads DIR as training reads it (repairs and skips reported) and writes it, images copied, in the other format
    (see `mobilevision.tasks.detection.data.convert`). A structural defect or a non-empty DST: one line, exit 2.
    """
    from mobilevision.tasks.detection.data.convert import convert

    parser = argparse.ArgumentParser(
        prog="mobilevision data convert",
        description=convert_main.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source", default="auto", choices=["auto", "voc", "yolo", "coco"])
    parser.add_argument("--to", required=True, choices=["coco", "yolo", "voc"])
    parser.add_argument("--root", required=True, type=Path, help="the detection folder to read")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write (new or empty)")
    args = parser.parse_args(list(argv))
    fmt, lines = convert(args.root, args.out, to=args.to, format=args.source)
    print(f"read {args.root} as {fmt}, wrote {args.out} as {args.to}")
    for line in lines:
        print(f"  {line}")
    return 0


def main(argv: Sequence[str]) -> int:
    return dispatch("data", TABLE, argv)
