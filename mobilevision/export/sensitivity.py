"""`--int8-keep-float auto`: which layers to keep in float, found by measuring what quantizing each one costs.

The graph's quantized nodes (`quantize.OP_TYPES`) are grouped by the module they come from (`layer_groups`): the
stem, each backbone block (`backbone/features.N`), each extra layer, each class / box predictor, each part of the
segmentation head. The search (`search_keep_float`) is onnxruntime's own quantizer run with different
`nodes_to_exclude`, on one calibration (its `calibration_cache_path`, so the images go through the model once):
  1. quantize everything; measure its error (`OutputError`: the raw outputs of int8 against fp32 on held-out images,
     RMS of the difference over RMS of the fp32 values, the worst output). Within `tolerance`: done, nothing kept.
  2. for each group, quantize everything but that group and measure again: the error left when it stays float
     ranks the groups (the lower, the more its quantization cost).
  3. keep the best-ranked groups in float one at a time (each step quantized and measured for real: errors of
     groups do not add up) until the error is within `tolerance`, or `max_groups` are kept (then the step with the
     lowest error is the result).
The held-out images are the user's calibration folder's images after the ones calibrated on (the same kind of
images, not seen by calibration), or the calibration images themselves when the folder has no more.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Default tolerance on the raw outputs' relative error (`OutputError`); see docs/benchmarks.md for what it meant in
# mAP / mIoU on the trained demo checkpoints.
DEFAULT_TOLERANCE = 0.05
_NUMBERED = re.compile(r".*\.\d+$")


def group_of(node_name: str) -> str | None:
    """The module a node of an exported graph comes from: its name's first path component when that is numbered
    ("/extra.0/...", "/cls_heads.3/...") or else its first two ("/backbone/features.8/...", "/seg_head/project/...");
    None for a node outside any module (a top-level Concat, Reshape...)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    return parts[0] if _NUMBERED.match(parts[0]) or len(parts) < 3 else "/".join(parts[:2])


def layer_groups(model: Any, op_types: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> the names of its nodes of `op_types`, in graph order; the group of the graph's first Conv is
    named "stem" (the classic int8 pitfall: a 3-channel convolution whose input range is the image's)."""
    groups: dict[str, list[str]] = {}
    first_conv = next((n.name for n in model.graph.node if n.op_type == "Conv"), None)
    stem = group_of(first_conv) if first_conv else None
    for node in model.graph.node:
        key = group_of(node.name) if node.op_type in op_types else None
        if key is not None:
            groups.setdefault("stem" if key == stem else key, []).append(node.name)
    return groups


class OutputError:
    """The error of an int8 model's raw outputs against the fp32 model's on fixed feeds: per output, RMS of the
    difference over RMS of the fp32 values (constant outputs, e.g. the default boxes, come out 0); the worst."""

    def __init__(self, fp32: str | os.PathLike[str], feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        session = _session(fp32)
        self.names = [o.name for o in session.get_outputs()]
        self.reference = [session.run(None, feed) for feed in self.feeds]

    def __call__(self, int8: str | os.PathLike[str]) -> float:
        session = _session(int8)
        diff = np.zeros(len(self.names))
        norm = np.zeros(len(self.names))
        for feed, reference in zip(self.feeds, self.reference):
            for i, (a, b) in enumerate(zip(reference, session.run(self.names, feed))):
                diff[i] += float(np.square(b.astype(np.float64) - a).sum())
                norm[i] += float(np.square(a.astype(np.float64)).sum())
        return float(np.max(np.sqrt(diff / np.maximum(norm, 1e-30))))


def _session(path: str | os.PathLike[str]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass
class SearchResult:
    """What the search kept and measured: `kept` group names (in the order they were added), their node names,
    the error with nothing kept and at the end, and the per-group ranking (error with only that group in float)."""

    kept: list[str]
    nodes: list[str]
    error_all_int8: float
    error: float
    tolerance: float
    ranking: dict[str, float] = field(default_factory=dict)
    trials: int = 0

    def record(self) -> dict[str, Any]:
        worst = sorted(self.ranking.items(), key=lambda kv: kv[1])[:5]
        return {
            "groups": self.kept,
            "error_all_int8": round(self.error_all_int8, 5),
            "error": round(self.error, 5),
            "tolerance": self.tolerance,
            "trials": self.trials,
            "ranking": {k: round(v, 5) for k, v in worst},
        }

    def lines(self) -> list[str]:
        ranked = sorted(self.ranking.items(), key=lambda kv: kv[1])[:5]
        within = "within" if self.error <= self.tolerance else "NOT within"
        return [
            f"int8 sensitivity: output error {self.error_all_int8:.4f} with every layer quantized; "
            f"{self.trials} quantizations measured",
            "  error with only this group in float (lowest first): "
            + ", ".join(f"{name} {value:.4f}" for name, value in ranked),
            f"  kept in float: {', '.join(self.kept) if self.kept else 'none'} -> output error {self.error:.4f} "
            f"({within} tolerance {self.tolerance:g})",
        ]


def search_keep_float(
    prepared: str | os.PathLike[str],
    quantize: Callable[[Path, Path, list[str]], None],
    error: Callable[[Path], float],
    groups: dict[str, list[str]],
    *,
    fixed: Sequence[str] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    max_groups: int | None = None,
) -> SearchResult:
    """The greedy search of the module docstring. `quantize(prepared, out, nodes_to_exclude)` writes an int8 model,
    `error(path)` measures it; `fixed` nodes stay float in every trial (the user's own --int8-keep-float names)."""
    limit = max_groups if max_groups is not None else max(1, len(groups) // 4)
    trials = 0
    with tempfile.TemporaryDirectory() as tmp:

        def measure(kept_groups: Sequence[str]) -> float:
            nonlocal trials
            trials += 1
            out = Path(tmp) / f"trial_{trials}.onnx"
            nodes = [*fixed, *(n for g in kept_groups for n in groups[g])]
            quantize(Path(prepared), out, sorted(dict.fromkeys(nodes)))
            value = error(out)
            out.unlink()
            return value

        base = measure([])
        result = SearchResult([], list(fixed), base, base, tolerance)
        if base <= tolerance:
            result.trials = trials
            return result
        result.ranking = {name: measure([name]) for name in groups}
        order = sorted(groups, key=lambda name: result.ranking[name])
        best: tuple[float, list[str]] = (base, [])
        kept: list[str] = []
        for name in order[:limit]:
            kept.append(name)
            value = result.ranking[name] if len(kept) == 1 else measure(kept)
            if value < best[0]:
                best = (value, list(kept))
            if value <= tolerance:
                break
    result.error, result.kept = best
    result.nodes = sorted(dict.fromkeys([*fixed, *(n for g in result.kept for n in groups[g])]))
    result.trials = trials
    return result
