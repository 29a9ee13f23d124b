"""`mobilevision benchmark onnx-ops MODEL.onnx [MODEL.onnx ...]`: where an ONNX model's time goes in onnxruntime.

Each model runs in the session `Predictor` uses (`make_session`: graph optimisation level ALL, sequential, the given
threads) with onnxruntime's own profiler on, on a random input of the graph's shape (batch 1; a graph of dynamic size at
`--size H W`, else at the size it was exported for). Printed per model: kernel time per run by operator type,
convolutions split by kind (depthwise, 1x1, other: read from the *optimised* graph, whose node names the profiler
reports), and the median run time. Kernel time is what the operators cost; run time adds onnxruntime's per-node
overhead.

Used to answer "what bounds this model": e.g. whether an fp32 detector is convolution-bound, or where an int8
model's time goes against its fp32 source (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.benchmarks import common
from mobilevision.errors import UserError, WeightsError

WARMUP = 3  # runs before the measured ones


def _conv_kinds(optimized: Path) -> dict[str, str]:
    """Node name -> "depthwise" | "1x1" | "other" for every convolution of an optimised ONNX graph."""
    import onnx

    kinds = {}
    for node in onnx.load(str(optimized)).graph.node:
        if "Conv" not in node.op_type:
            continue
        attrs = {a.name: a for a in node.attribute}
        group = attrs["group"].i if "group" in attrs else 1
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else None
        kinds[node.name] = "depthwise" if group > 1 else ("1x1" if kernel in (None, [1, 1]) else "other")
    return kinds


def profile(model: Path, *, repeats: int = 50, threads: int = 1, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Kernel milliseconds per run by operator type and by convolution kind, and the median run time."""
    from mobilevision.export.onnx import make_session

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session = make_session(
            model,
            num_threads=threads,
            options_hook=lambda options: _profiling(
                options, prefix=str(Path(tmp) / "profile"), optimized=str(optimized)
            ),
        )
        spec = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in spec.shape]
        dynamic = [i for i in (-2, -1) if not isinstance(spec.shape[i], int)]
        if dynamic:  # a graph of any size (segmentation): --size, else the size it was exported for
            spatial = size or _exported_size(model)
            for i in dynamic:
                shape[i] = spatial[i]
        feed = {spec.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        for _ in range(WARMUP + repeats):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        kinds = _conv_kinds(optimized)
    by_op: collections.Counter[str] = collections.Counter()
    by_conv: collections.Counter[str] = collections.Counter()
    nodes: collections.Counter[str] = collections.Counter()
    # The profiler is on from the session's start: the warm-up runs (the first is slow) are left out by time.
    all_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    start = all_runs[WARMUP]["ts"] if len(all_runs) > WARMUP else 0
    runs = [e["dur"] for e in all_runs[WARMUP:]]
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < start:
            continue
        op = event["args"]["op_name"]
        by_op[op] += event["dur"]
        nodes[op] += 1
        if "Conv" in op:
            by_conv[kinds.get(event["name"][: -len("_kernel_time")], "other")] += event["dur"]
    count = max(1, len(runs))
    total = sum(by_op.values())
    return {
        "model": str(model),
        "input": shape,
        "threads": threads,
        "runs": len(runs),
        "kernel_ms": total / count / 1000,
        "run_ms": statistics.median(runs) / 1000 if runs else None,
        "ops": [
            {"op": op, "ms": t / count / 1000, "share": t / total if total else 0.0, "nodes": nodes[op] // count}
            for op, t in by_op.most_common()
        ],
        "convolutions": {kind: t / count / 1000 for kind, t in by_conv.most_common()},
    }


def _exported_size(model: Path) -> tuple[int, int]:
    from mobilevision.export.onnx import read_metadata

    try:
        return tuple(read_metadata(model)[0].input_size)  # type: ignore[return-value]
    except WeightsError:
        raise UserError(
            f"{model}: the graph's input size is dynamic and it has no mobilevision metadata; give --size H W"
        ) from None


def _profiling(options: Any, *, prefix: str, optimized: str) -> None:
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    options.optimized_model_filepath = optimized


def format_profile(result: dict[str, Any]) -> str:
    lines = [
        (
            f"{result['model']} input {result['input']}, {result['threads']} thread(s), {result['runs']} runs: "
            f"kernel {result['kernel_ms']:.3f} ms, run {result['run_ms']:.3f} ms (median)"
        )
    ]
    lines += [
        f"  {row['op']:<24} {row['ms']:8.3f} ms {100 * row['share']:5.1f}%  {row['nodes']:4d} nodes"
        for row in result["ops"]
    ]
    lines.append("  convolutions: " + ", ".join(f"{kind} {ms:.3f} ms" for kind, ms in result["convolutions"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = common.parser("onnx-ops", __doc__)
    parser.add_argument("models", type=Path, nargs="+", help="ONNX files (e.g. model.onnx model.int8.onnx)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="input height and width for graphs of dynamic size (default: the exported size)",
    )
    args = parser.parse_args(list(argv))
    for model in args.models:
        if not model.is_file():
            raise UserError(f"{model}: file not found")
    for model in args.models:
        print(
            format_profile(
                profile(model, repeats=args.repeats, threads=args.threads, size=tuple(args.size) if args.size else None)
            )
        )
    return 0
