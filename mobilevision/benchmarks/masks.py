"""`mobilevision benchmark masks`: the mask post-processing against the network, `Predictor` end to end / forward,
for the segmenter and the joint model, torch and onnxruntime, and the post-processing against the full upsampling.

Models: `deeplabv3_mobilenet_v2` (21 classes, the paper's reduced head, output stride 16) and
`ssdlite_deeplabv3_mobilenet_v2` (81 + 21 classes), width 1.0, built from seed 0; by default every BatchNorm is
calibrated on generated photo-like images (`benchmarks.calibration`), so the mask is busy (about half the logit cells
lie on a class border, a hard case for `upsampled_argmax`); `--uncalibrated` keeps fresh statistics (one class
everywhere: the floor of the post-processing), `--weights CKPT ...` benchmarks trained checkpoints instead.

Settings, one RGB uint8 480x640 busy image (`benchmarks.images.busy_image`):
  resize 384   `Predictor(input_size=(384, 384))`: the image resized to the input, the logits (24x24) upsampled to
               480x640 (the setting of the earlier table in docs/benchmarks.md);
  pad 512      the segmenter's default: padded to 512x640 (the training size 512, a multiple of 16), the logits
               (32x40) upsampled to the canvas, cropped to the image.
Per pipeline: the stages of `Predictor.timed` (preprocess, forward, postprocess), end to end (wall time around the
call) and end to end / forward (the issue's goal: <= 1.25); beside it, interleaved in the same rounds, the previous
post-processing on the same network outputs (one full upsampling channels-last, then the argmax: `full_ms`), and the
share of mask pixels the two agree on (they should be equal up to float-rounding ties). Medians of `--repeats`
interleaved rounds (`benchmarks.timing.interleaved`).

Command: `OMP_NUM_THREADS=1 mobilevision benchmark masks [--repeats N] [--threads N] [--uncalibrated]
[--weights CKPT ...] [--out FILE]`. Measured numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mobilevision.benchmarks import common
from mobilevision.benchmarks.calibration import calibrate_batchnorm
from mobilevision.benchmarks.images import busy_image, photo_like_images
from mobilevision.benchmarks.timing import interleaved, median_ms

IMAGE = (480, 640)
GOAL = 1.25


def full_mask(logits: Tensor, image_size: tuple[int, int], canvas: tuple[int, int] | None) -> Tensor:
    """The previous post-processing: every class upsampled (channels-last) to the image or canvas, crop, argmax."""
    target = image_size if canvas is None else canvas
    # A true channels-last copy: a torch backend's [C, h, w] output with a batch dimension added has the batch
    # stride C, which `F.interpolate` reads as planar (its slow path, about 10x here).
    planes = logits.float().contiguous()[None].contiguous(memory_format=torch.channels_last)
    full = F.interpolate(planes, size=target, mode="bilinear", align_corners=False)[0]
    return full[:, : image_size[0], : image_size[1]].argmax(0).to(torch.uint8)


def _models(calibrate: bool, images: int) -> list[tuple[str, Any, list[tuple[str, tuple[int, int] | None]]]]:
    from mobilevision.models import build_model

    out = []
    for name, kwargs, settings in (
        ("deeplabv3_mobilenet_v2", {"num_classes": 21}, [("resize 384", (384, 384)), ("pad 512", None)]),
        ("ssdlite_deeplabv3_mobilenet_v2", {"num_classes": 81, "seg_num_classes": 21}, [("resize 384", (384, 384))]),
    ):
        torch.manual_seed(0)
        model = build_model(name, **kwargs).eval()
        if calibrate:
            calibrate_batchnorm(model, photo_like_images(images, (384, 384), seed=0))
        out.append((name, model, settings))
    return out


def _checkpoints(paths: Sequence[Path]) -> list[tuple[str, Any, list[tuple[str, tuple[int, int] | None]]]]:
    from mobilevision.checkpoint import load_checkpoint

    out = []
    for path in paths:
        common.check_weights(path)
        model, meta = load_checkpoint(path)
        size = tuple(meta.input_size)
        settings = [(f"pad {size[0]}", None)] if meta.task == "segmentation" else []
        out.append((str(path), path, [*settings, (f"resize {size[0]}", size)]))
    return out


def _predictor(model: Any, backend: str, input_size: tuple[int, int] | None, threads: int) -> Any:
    from mobilevision.inference.predictor import Predictor

    with warnings.catch_warnings():  # the in-memory export's tracer warnings
        warnings.simplefilter("ignore")
        return Predictor(model, backend=backend, input_size=input_size, num_threads=threads)


def run(
    *, repeats: int = 7, threads: int = 1, calibrate: bool = True, weights: Sequence[Path] = (), images: int = 16
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    image = busy_image(IMAGE)
    models = _checkpoints(weights) if weights else _models(calibrate, images)
    rows = []
    for name, model, settings in models:
        for setting, input_size in settings:
            pipelines: dict[str, Any] = {}
            for backend in ("torch", "onnxruntime"):
                predictor = _predictor(model, backend, input_size, threads)
                pipelines[f"{backend} predictor"] = lambda p=predictor: p.timed(image)
                # The same network outputs for the previous post-processing: the mask logits are the last output
                # (the segmenter's only one, the joint model's fourth); a padded input's canvas is the batch's size.
                batch = predictor.preprocess([image])
                logits = torch.as_tensor(predictor.forward(batch)[-1][0])
                canvas = None if input_size is not None else tuple(batch.shape[-2:])
                pipelines[f"{backend} full"] = lambda x=logits, c=canvas: (full_mask(x, IMAGE, c), {})
            stages, last = interleaved(pipelines, repeats=repeats)
            for backend in ("torch", "onnxruntime"):
                timed = {key: median_ms(values) for key, values in stages[f"{backend} predictor"].items()}
                mask = np.asarray(last[f"{backend} predictor"]["mask"])
                reference = last[f"{backend} full"].numpy()
                rows.append(
                    {
                        "model": name,
                        "setting": setting,
                        "backend": backend,
                        "forward_ms": timed["forward"],
                        "post_ms": timed["postprocess"],
                        "end_to_end_ms": timed["end_to_end"],
                        "ratio": timed["end_to_end"] / timed["forward"],
                        "full_ms": median_ms(stages[f"{backend} full"]["end_to_end"]),
                        "agreement": float((mask == reference).mean()),
                        "mask_classes": int(len(np.unique(mask))),
                    }
                )
    return {"image": list(IMAGE), "threads": threads, "repeats": repeats, "calibrated": calibrate, "rows": rows}


def report(results: dict[str, Any]) -> str:
    lines = [
        "| model | setting | backend | forward ms | post ms | end-to-end ms | end-to-end / forward | full upsampling + "
        "argmax ms | same pixels | classes in mask |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['backend']} | {r['forward_ms']:.1f} | {r['post_ms']:.1f} | "
            f"{r['end_to_end_ms']:.1f} | {r['ratio']:.2f} | {r['full_ms']:.1f} | {100 * r['agreement']:.3f}% | "
            f"{r['mask_classes']} |"
        )
    missed = sum(r["ratio"] > GOAL for r in results["rows"])
    verdict = "met on every row" if not missed else f"not met on {missed} of {len(results['rows'])} rows"
    lines.append(f"goal end-to-end / forward <= {GOAL}: {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = common.parser("masks", __doc__)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs per pipeline (medians reported)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--uncalibrated", action="store_true", help="fresh BatchNorm statistics (one-class masks)")
    parser.add_argument("--calibration-images", type=int, default=16, help="BatchNorm calibration images")
    parser.add_argument("--weights", type=Path, nargs="+", default=[], help="segmentation or multitask checkpoints")
    common.add_json(parser, "--out")
    args = parser.parse_args(list(argv))
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    if args.calibration_images < 2:
        parser.error(f"--calibration-images must be >= 2, got {args.calibration_images}")
    results = run(
        repeats=args.repeats,
        threads=args.threads,
        calibrate=not args.uncalibrated,
        weights=args.weights,
        images=args.calibration_images,
    )
    print(report(results))
    return common.finish(results, args.out)
