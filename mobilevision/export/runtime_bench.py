"""Prototype measurement for issue 26: parity and one-thread speed of `.pte` / `.tflite` against onnxruntime fp32.

    PYTHONPATH=. /work/rtenv/bin/python -m mobilevision.export.runtime_bench --model detector --formats pte tflite

Builds the model (seeded, BatchNorm calibrated on generated photo-like images so outputs vary as a trained
network's do), exports ONNX fp32 and each requested format (fp32, and int8 with `--int8`), then:
- parity: raw outputs on `parity_images` against PyTorch, max |diff| / max(1, max |value|) per output, and the
  detections above 0.3 (the task's own `compare`);
- speed: one thread everywhere, `--rounds` rounds interleaved in one process, each round the median of `--repeats`
  calls per runner; reported as the median over rounds of (runner / onnxruntime fp32).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mobilevision.checkpoint import ModelMeta
from mobilevision.export.executorch import export_surface
from mobilevision.export.onnx import INPUT_NAME, compare_outputs, export_bytes, make_session, parity_images
from mobilevision.models import build_model
from mobilevision.tasks.table import task_of_model

Runner = Callable[[Tensor], list[Tensor]]
PRESETS = {
    "detector": ("detection", "ssdlite_mobilenet_v2", {"num_classes": 7, "width_mult": 0.5}, 320),
    "segmenter": ("segmentation", "deeplabv3_mobilenet_v2", {"num_classes": 6, "width_mult": 0.5}, 512),
}


def build(preset: str) -> tuple[torch.nn.Module, ModelMeta]:
    """The preset's model, seeded and BatchNorm-calibrated, and its ModelMeta."""
    from mobilevision.benchmarks.calibration import calibrate_batchnorm
    from mobilevision.benchmarks.images import photo_like_images

    task, name, kwargs, size = PRESETS[preset]
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    calibrate_batchnorm(model, photo_like_images(8, (size, size), seed=0))
    names = ["background"] + [f"c{i}" for i in range(1, kwargs["num_classes"])]
    ids = list(range(len(names))) if task == "detection" else None
    meta = ModelMeta(
        task=task, model_name=name, model_kwargs=kwargs, class_names=names, category_ids=ids, input_size=(size, size)
    )
    return model.eval(), meta


def run_each(runner: Runner, images: Tensor) -> list[Tensor]:
    """`runner` on each image [1, 3, H, W] of `images` [N, 3, H, W]; batch outputs concatenated (outputs without a
    batch axis, a detector's anchors, taken from the first)."""
    runs = [runner(images[i : i + 1]) for i in range(images.shape[0])]
    return [torch.cat(col) if col[0].dim() > 2 else col[0] for col in zip(*runs)]


def parity(model: torch.nn.Module, runner: Runner, images: Tensor, input_size: tuple[int, int]) -> str:
    """The parity report of `runner` against PyTorch on `images`, formatted."""
    task = task_of_model(model)
    with torch.no_grad():
        reference = run_each(lambda x: list(export_surface(model)(x)), images)
    other = run_each(runner, images)
    report = compare_outputs(task, reference, other, source=model, input_size=input_size, thresholds=(0.3,))
    return report.format(("torch", "runtime"), verdict=False) + f"\n  max relative {report.max_relative_diff:.3g}"


def timing(runners: dict[str, Runner], image: Tensor, *, rounds: int, repeats: int) -> dict[str, tuple[float, float]]:
    """name -> (median ms over rounds, median over rounds of ms / onnxruntime's ms in the same round)."""
    per_round: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                runner(image)
                times.append(time.perf_counter() - start)
            per_round[name].append(1000 * statistics.median(times))
    base = per_round["onnxruntime fp32"]
    return {
        name: (statistics.median(ms), statistics.median(m / b for m, b in zip(ms, base)))
        for name, ms in per_round.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PRESETS), default="detector")
    parser.add_argument("--formats", nargs="+", choices=("pte", "tflite"), default=["pte", "tflite"])
    parser.add_argument("--int8", action="store_true", help="also int8 (pt2e, per-channel weights)")
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping exported files between runs")
    parser.add_argument("--no-time", action="store_true", help="parity only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, meta = build(args.model)
    size = meta.input_size
    images = parity_images(size, 3, seed=0)
    calibration = list(parity_images(size, args.calibration_images, seed=1).split(1))
    session = make_session(export_bytes(model, meta), num_threads=1)
    runners: dict[str, Runner] = {
        "onnxruntime fp32": lambda x: [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: x.numpy()})],
        "torch fp32": lambda x: list(export_surface(model)(x)),
    }
    for fmt in args.formats:
        for int8 in (False, True) if args.int8 else (False,):
            label = f"{fmt} {'int8' if int8 else 'fp32'}"
            start = time.perf_counter()
            cached = args.cache / f"{args.model}.{'int8' if int8 else 'fp32'}.{fmt}" if args.cache else None
            if cached is not None and cached.exists():
                data = cached.read_bytes()
            elif fmt == "pte":
                from mobilevision.export.executorch import export_pte

                data = export_pte(model, size, int8=int8, calibration=calibration)
            else:
                from mobilevision.export.tflite import export_tflite

                data = export_tflite(model, size, int8=int8, calibration=calibration)
            if cached is not None and not cached.exists():
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(data)
            if fmt == "pte":
                from mobilevision.export.executorch import PteRunner

                runner: Runner = PteRunner(data, num_threads=1)
            else:
                from mobilevision.export.tflite import TfliteRunner

                runner = TfliteRunner(data, num_threads=1)
            print(f"{label}: exported/loaded in {time.perf_counter() - start:.1f} s, {len(data) / 1e6:.2f} MB")
            print(parity(model, runner, images, size), flush=True)
            print(flush=True)
            runners[label] = runner
    if args.no_time:
        return
    with torch.no_grad():
        results = timing(runners, images[1:2], rounds=args.rounds, repeats=args.repeats)
    print(f"speed, 1 thread, {args.rounds} interleaved rounds x {args.repeats} calls ({args.model} {size}):")
    for name, (ms, ratio) in results.items():
        print(f"  {name:18s} {ms:8.2f} ms  x{ratio:.2f} of onnxruntime fp32")
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
