"""`mobilevision evaluate <task>`: score a predictions file or folder against ground truth, with the evaluator the
task table declares for that task (`Task.evaluate`)."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.cli.dispatch import dispatch
from mobilevision.tasks.table import TASKS


def main(argv: Sequence[str]) -> int:
    table = {
        name: (*task.evaluate.split(":", 1), f"score {name} predictions against ground truth")
        for name, task in TASKS.items()
        if task.evaluate
    }
    return dispatch("evaluate", table, argv)  # type: ignore[arg-type]
