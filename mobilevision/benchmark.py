"""`mobilevision benchmark data|predictor|segmentation|coco-eval|int8`: speed (and, for int8, accuracy) measured side
by side against a reference in the same process."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.subcommands import dispatch

TABLE = {
    "data": ("mobilevision.tasks.detection.data_benchmark", "main"),
    "predictor": ("mobilevision.inference.benchmark", "main"),
    "segmentation": ("mobilevision.inference.seg_benchmark", "main"),
    "coco-eval": ("mobilevision.tasks.detection.eval_benchmark", "main"),
    "int8": ("mobilevision.export.int8_benchmark", "main"),
}


def main(argv: Sequence[str]) -> int:
    return dispatch("benchmark", TABLE, argv)
