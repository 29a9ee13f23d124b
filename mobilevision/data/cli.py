"""`mobilevision data shapes|check|to-coco`: generate the synthetic shapes set, check a dataset through its training
reader, write a VOC detection split as the COCO-format ground truth `evaluate detection` reads."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.subcommands import dispatch

TABLE = {
    "shapes": ("mobilevision.data.shapes", "main"),
    "check": ("mobilevision.data.check", "main"),
    "to-coco": ("mobilevision.tasks.detection.data", "to_coco_main"),
}


def main(argv: Sequence[str]) -> int:
    return dispatch("data", TABLE, argv)
