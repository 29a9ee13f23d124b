"""`mobilevision benchmark <name>`: speed (and, for int8, accuracy) measured side by side against a reference in the
same process. The names are those the task table's entries declare (`Task.benchmarks`: predictor, data, coco-eval,
segmentation), plus `int8`, which quantizes a checkpoint of any task, and `onnx-ops`, onnxruntime's profile of any
exported model by operator."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.subcommands import dispatch
from mobilevision.tasks.table import TASKS


def main(argv: Sequence[str]) -> int:
    table = {name: tuple(path.split(":")) for task in TASKS.values() for name, path in task.benchmarks.items()}
    table["int8"] = ("mobilevision.tasks.int8_benchmark", "main")
    table["onnx-ops"] = ("mobilevision.export.ort_profile", "main")
    return dispatch("benchmark", table, argv)  # type: ignore[arg-type]
