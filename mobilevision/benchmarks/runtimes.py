"""Runtimes side by side: torch, onnxruntime, LiteRT (`.tflite`), ExecuTorch (`.pte`), fp32 and int8, forward and end
to end through `Predictor`, one thread, interleaved, the same weights and image (issue 26).

    python -m mobilevision.benchmarks.runtimes --model detector --int8 --cache /tmp/rt
    python -m mobilevision.benchmarks.runtimes --weights CKPT --images FOLDER --int8

Each runtime present is used (LiteRT needs `mobilevision[tflite]`, ExecuTorch `mobilevision[executorch]`); the
exported files go to `--cache` (kept between runs). int8: pt2e (per-channel weights) for the mobile formats, the
ONNX QDQ quantizer for onnxruntime (with `--images` only: it calibrates on files), calibrated on the first
`--calibration-images` of `--images` (default: generated images). Printed per runner: forward and end-to-end
median ms, their ratio to torch fp32 in the same rounds, int8's speed-up over the same runtime's fp32, and the
forward's GFLOP/s (2 x MAdds / forward time). With `--nms` (detectors), each format's NAME.nms.SUFFIX (decoding
and NMS inside the graph, `export --nms`) runs too: its "forward" is the whole graph, its end to end the
preprocessing plus the graph, beside the raw graph plus our post-processing.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.benchmarks.timing import interleaved, median_ms
from mobilevision.export.mobile import SUFFIXES, export_mobile
from mobilevision.export.mobile_check import calibration_tensors
from mobilevision.export.onnx import export_onnx, parity_images
from mobilevision.inference.predictor import Predictor
from mobilevision.profile import count_madds

RUNTIME_MODULES = {"tflite": ("litert_torch", "ai_edge_litert"), "executorch": ("executorch",)}


def _available(fmt: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in RUNTIME_MODULES[fmt])


def cache_stem(args: argparse.Namespace) -> Path:
    """The exported files' stem in `--cache`: the checkpoint's name and a digest of its resolved path, so two
    checkpoints both called last.ckpt never share (and silently reuse) each other's exports."""
    import hashlib

    if args.weights is None:
        return args.cache / args.model
    digest = hashlib.sha1(str(Path(args.weights).resolve()).encode()).hexdigest()[:8]
    return args.cache / f"{Path(args.weights).stem}-{digest}"


def predictors(model: Any, meta: Any, args: argparse.Namespace) -> dict[str, Predictor]:
    """Label -> Predictor for every runtime and precision requested and installed (exporting into `args.cache`)."""
    size = tuple(meta.input_size)
    threshold = args.score_threshold
    stem = cache_stem(args)
    paths = (
        sorted(p for p in Path(args.images).iterdir() if p.is_file())[: args.calibration_images] if args.images else []
    )
    calibration = (
        calibration_tensors(model, meta, size, paths)
        if paths
        else list(parity_images(size, args.calibration_images, seed=1).split(1))
    )
    out = {"torch fp32": Predictor(model, meta=meta, input_size=size, num_threads=1, score_threshold=threshold)}
    onnx = stem.with_suffix(".onnx")
    if not onnx.exists():
        export_onnx(model, onnx, meta, input_size=size)
    out["onnxruntime fp32"] = Predictor(onnx, num_threads=1, score_threshold=threshold)
    if args.int8 and paths:
        from mobilevision.export.quantize import quantize_onnx

        int8 = stem.with_suffix(".int8.onnx")
        if not int8.exists():
            quantize_onnx(onnx, int8, paths)
        out["onnxruntime int8"] = Predictor(int8, num_threads=1, score_threshold=threshold)
    for fmt in args.formats:
        if not _available(fmt):
            print(f"{fmt}: not installed (pip install 'mobilevision[{fmt}]'), skipped")
            continue
        for quantized in (False, True) if args.int8 else (False,):
            path = stem.with_suffix((".int8" if quantized else "") + SUFFIXES[fmt])
            if not path.exists():
                export_mobile(model, path, meta, fmt=fmt, input_size=size, int8=quantized, calibration=calibration)
            out[f"{fmt} {'int8' if quantized else 'fp32'}"] = Predictor(path, num_threads=1, score_threshold=threshold)
    return out


def nms_graphs(model: Any, meta: Any, args: argparse.Namespace, preprocess: Predictor) -> dict[str, Any]:
    """Label -> a timed call of each format's NMS graph on an image (preprocessed by `preprocess`, as the raw
    graphs' Predictors do), exporting into `args.cache` (fp32)."""
    import time

    from mobilevision.export.mobile import MobileSession
    from mobilevision.export.nms import NMS_OUTPUTS, export_nms_mobile, export_nms_onnx
    from mobilevision.export.onnx import make_session

    size = tuple(meta.input_size)
    stem = cache_stem(args)
    sessions: dict[str, Any] = {}
    onnx = stem.with_suffix(".nms.onnx")
    if not onnx.exists():
        onnx.write_bytes(export_nms_onnx(model, size, score_threshold=args.score_threshold))
    sessions["onnxruntime nms-graph"] = make_session(onnx, num_threads=1)
    for fmt in args.formats:
        if not _available(fmt):
            continue
        path = stem.with_suffix(".nms" + SUFFIXES[fmt])
        if not path.exists():
            export_nms_mobile(model, path, meta, fmt=fmt, input_size=size, score_threshold=args.score_threshold)
        sessions[f"{fmt} nms-graph"] = MobileSession(path, num_threads=1)

    def timed(session: Any, image: np.ndarray) -> tuple[Any, dict[str, float]]:
        tensor = preprocess.preprocess([image]).float().numpy()
        start = time.perf_counter()
        outputs = session.run(list(NMS_OUTPUTS), {"images": tensor})
        return outputs, {"forward": time.perf_counter() - start}

    return {name: (lambda image, s=session: timed(s, image)) for name, session in sessions.items()}


def main(argv: list[str] | None = None) -> int:
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.export.runtime_bench import PRESETS, build

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PRESETS), default="detector", help="an untrained preset")
    parser.add_argument("--weights", type=Path, default=None, help="a checkpoint instead of --model")
    parser.add_argument("--images", type=Path, default=None, help="folder: calibration and the timed image")
    parser.add_argument("--formats", nargs="+", choices=sorted(SUFFIXES), default=sorted(SUFFIXES))
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=Path("runtime-bench"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--export-only", action="store_true", help="fill --cache and stop (export under a shared lock)")
    parser.add_argument("--nms", action="store_true", help="detectors: also time the NMS graphs (`export --nms`)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="the detection threshold, both sides")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.images is not None:
        args.images = args.images / "images" if (args.images / "images").is_dir() else args.images
    model, meta = load_checkpoint(args.weights) if args.weights else build(args.model)
    model = model.eval()
    runners = predictors(model, meta, args)
    graphs = nms_graphs(model, meta, args, runners["torch fp32"]) if args.nms else {}
    if args.export_only:
        print(f"exported into {args.cache}: {', '.join([*runners, *graphs])}")
        return 0
    if args.images is not None:
        from mobilevision.inference.inputs import load_input

        image = load_input(sorted(p for p in args.images.iterdir() if p.is_file())[-1])
    else:
        image = parity_images(tuple(meta.input_size), 2, seed=0)[1].permute(1, 2, 0).to(torch.uint8).numpy()
    image = np.ascontiguousarray(image)
    calls = {k: (lambda p=p: p.timed(image)) for k, p in runners.items()}
    calls.update({k: (lambda g=g: g(image)) for k, g in graphs.items()})
    stages, _ = interleaved(calls, repeats=args.repeats)
    madds = count_madds(model, tuple(meta.input_size))
    h, w = meta.input_size
    print(
        f"{args.weights or args.model} at {h}x{w}, image {image.shape[1]}x{image.shape[0]}, {madds / 1e6:.0f} MAdds; "
        f"1 thread, {args.repeats} interleaved rounds; ratios are medians of per-round ratios"
    )
    print("| runner | forward ms | end to end ms | forward / torch | e2e / torch | int8 speed-up (fwd) | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    base = stages["torch fp32"]
    for name, st in stages.items():
        ratio = statistics.median(a / b for a, b in zip(st["forward"], base["forward"]))
        e2e = statistics.median(a / b for a, b in zip(st["end_to_end"], base["end_to_end"]))
        fp32 = stages.get(name.replace("int8", "fp32"))
        speed = (
            statistics.median(b / a for a, b in zip(st["forward"], fp32["forward"]))
            if "int8" in name and fp32
            else None
        )
        gflops = 2 * madds / (median_ms(st["forward"]) / 1000) / 1e9
        print(
            f"| {name} | {median_ms(st['forward']):.2f} | {median_ms(st['end_to_end']):.2f} | {ratio:.2f} | {e2e:.2f} "
            f"| {f'{speed:.2f}x' if speed else ''} | {gflops:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
