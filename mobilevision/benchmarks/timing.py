"""Timing pipelines side by side, as every benchmark here does: warm each up, then call them in turn for several
rounds, so that the machine's load (which drifts over minutes on a shared CPU) hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

Timed = Callable[[], tuple[Any, dict[str, float]]]


def interleaved(
    pipelines: Mapping[str, Timed], *, repeats: int, warmup: int = 1
) -> tuple[dict[str, dict[str, list[float]]], dict[str, Any]]:
    """Call each pipeline `warmup` times (first-call allocations, kernel caches), then `repeats` rounds of one call
    of each in turn.

    Args:
        pipelines: name -> a call returning (result, {stage: seconds}) (a `Predictor.timed` bound to its input, or a
            plain call wrapped to return no stages).
    Returns:
        per pipeline {stage: [seconds per round]} with `end_to_end` (the wall time around each call) added, and each
        pipeline's last result.
    """
    for call in pipelines.values():
        for _ in range(warmup):
            call()
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in pipelines}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for name, call in pipelines.items():
            start = time.perf_counter()
            result, parts = call()
            end_to_end = time.perf_counter() - start
            for key, value in {**parts, "end_to_end": end_to_end}.items():
                stages[name].setdefault(key, []).append(value)
            last[name] = result
    return stages, last


def median_ms(values: list[float]) -> float:
    """Median of `values` (seconds) in milliseconds."""
    return 1000.0 * statistics.median(values)
