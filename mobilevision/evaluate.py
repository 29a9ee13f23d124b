"""`mobilevision evaluate detection|segmentation`: score a predictions file or folder against ground truth."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.subcommands import dispatch

TABLE = {
    "detection": ("mobilevision.tasks.detection.evaluation", "main"),
    "segmentation": ("mobilevision.tasks.segmentation.evaluation", "main"),
}


def main(argv: Sequence[str]) -> int:
    return dispatch("evaluate", TABLE, argv)
