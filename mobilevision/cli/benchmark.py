"""`mobilevision benchmark <name>`: speed (and, for int8, accuracy) measured side by side against a reference in the
same process. The names are those `mobilevision.benchmarks.BENCHMARKS` lists."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.benchmarks import BENCHMARKS
from mobilevision.cli.dispatch import dispatch


def main(argv: Sequence[str]) -> int:
    table = {name: (module, "main", description) for name, (module, description) in BENCHMARKS.items()}
    return dispatch("benchmark", table, argv)
