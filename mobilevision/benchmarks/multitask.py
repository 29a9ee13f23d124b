"""`mobilevision benchmark multitask`: the joint model (one backbone pass, SSDLite + Mobile DeepLabv3) against our two
separate models (`ssdlite_mobilenet_v2` + `deeplabv3_mobilenet_v2`) answering the same question on the same image.

Models, same width and input size (presets, or `--weights JOINT DETECTOR SEGMENTER` checkpoints):
  paper   width 1.0, 81 detector classes, 21 mask classes, input 320; each model's default taps and extra layers
          (the joint's detector reads layer 18 at output stride 16, the separate one the layer-15 expansion and
          layer 19; the segmenter is the paper's reduced head on layer 18 at output stride 16);
  shapes  the demo's models: width 0.5, 6 classes for both heads, input 224, a stride-8 map for small shapes
          (joint taps [layer_8/expansion, layer_18], detector taps [layer_8/expansion, layer_15/expansion,
          layer_19]) and its default boxes (`configs/detection/ssdlite_mobilenetv2_shapes.yaml`).
Weights state without checkpoints: built from seed 0 with zero class biases, every BatchNorm calibrated on generated
photo-like images (`benchmarks.images`; `benchmark predictor` explains why), so detections exist. The segmenter is
the joint model's segmentation branch (its backbone and head weights copied), so both pipelines' masks are the same
network's; the separate detector keeps the joint's backbone weights where its layers are the same.

Pipelines, one RGB uint8 image at the input size (a busy generated scene, no resize on any side), through `Predictor`:
  joint      one Predictor: preprocessing, one forward pass, boxes + mask post-processing;
  pair       the detector's Predictor then the segmenter's on the same image (stages summed, each also timed),
for the torch backend (BatchNorm folded, channels-last) and onnxruntime (the exported graphs). Runs interleaved
(`benchmarks.timing.interleaved`), medians; end-to-end is the wall time around the call. Ratio = joint / pair, of the
forward stage and of end-to-end. Detection counts per pipeline must agree across the backends (the command fails
otherwise); masks are compared as pixel agreement (information).

Command: `OMP_NUM_THREADS=1 mobilevision benchmark multitask [--preset paper|shapes] [--width W] [--input-size S]
[--repeats N] [--threads N ...] [--weights J D S] [--out FILE]`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilevision.benchmarks import common
from mobilevision.benchmarks.calibration import calibrate_batchnorm
from mobilevision.benchmarks.images import busy_image, photo_like_images
from mobilevision.benchmarks.timing import interleaved, median_ms
from mobilevision.errors import InvalidValueError, UserError

SCORE_THRESHOLD = 0.3
_SHAPES_BOXES = {"num_maps": 6, "min_scale": 0.07, "max_scale": 0.75, "reduce_lowest": False}


@dataclass(frozen=True)
class Preset:
    """Model settings of one comparison: shared width, classes and input, plus each builder's own arguments."""

    width: float
    num_classes: int  # the detector's, background included
    mask_classes: int
    input_size: int
    joint: dict[str, Any] = field(default_factory=dict)
    detector: dict[str, Any] = field(default_factory=dict)
    segmenter: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "paper": Preset(width=1.0, num_classes=81, mask_classes=21, input_size=320),
    "shapes": Preset(
        width=0.5,
        num_classes=6,
        mask_classes=6,
        input_size=224,
        # Two taps + four extra layers (stride 32 down to 1x1 at 224): six maps, as the detector's 3 + 3.
        joint={
            "taps": ["layer_8/expansion", "layer_18"],
            "extra_depths": [512, 256, 256, 128],
            "default_boxes": _SHAPES_BOXES,
        },
        detector={
            "taps": ["layer_8/expansion", "layer_15/expansion", "layer_19"],
            "extra_depths": [256, 256, 128],
            "default_boxes": _SHAPES_BOXES,
        },
    ),
}


def build_models(preset: Preset, *, calibration_images: int = 32) -> tuple[list[nn.Module], list[Any]]:
    """(joint, detector, segmenter) untrained at the preset's settings, BatchNorm calibrated (see the module
    docstring), and their `ModelMeta`s at the preset's input size."""
    from mobilevision.checkpoint import ModelMeta
    from mobilevision.models import build_model

    size = (preset.input_size, preset.input_size)
    images = photo_like_images(calibration_images, size, seed=0)
    torch.manual_seed(0)
    kwargs = {
        "ssdlite_deeplabv3_mobilenet_v2": {
            "num_classes": preset.num_classes,
            "seg_num_classes": preset.mask_classes,
            "width_mult": preset.width,
            "class_prior": None,
            **preset.joint,
        },
        "ssdlite_mobilenet_v2": {
            "num_classes": preset.num_classes,
            "width_mult": preset.width,
            "class_prior": None,
            **preset.detector,
        },
        "deeplabv3_mobilenet_v2": {
            "num_classes": preset.mask_classes,
            "width_mult": preset.width,
            "output_stride": 16,
            "atrous_rates": (),
            **preset.segmenter,
        },
    }
    try:
        joint, detector, segmenter = (build_model(name, **args) for name, args in kwargs.items())
    except (TypeError, ValueError) as error:
        raise InvalidValueError(f"cannot build the benchmark's models: {error}") from None
    calibrate_batchnorm(joint, images)
    joint_state = joint.state_dict()
    # The segmenter is the joint model's segmentation branch: the same backbone and head weights.
    segmenter.load_state_dict(
        {
            k: joint_state[k.replace("head.", "seg_head.", 1) if k.startswith("head.") else k]
            for k in segmenter.state_dict()
        }
    )
    own = detector.state_dict()
    detector.load_state_dict(
        {k: v for k, v in joint_state.items() if k.startswith("backbone.") and k in own and own[k].shape == v.shape},
        strict=False,
    )
    calibrate_batchnorm(detector, images)
    models = [joint.eval(), detector.eval(), segmenter.eval()]
    metas = [
        replace(ModelMeta.for_model(m, model_name=name, model_kwargs={}), input_size=size)
        for m, name in zip(models, kwargs)
    ]
    return models, metas


def load_models(paths: Sequence[Path]) -> tuple[list[nn.Module], list[Any]]:
    """Three checkpoints: joint, detector, segmenter (their tasks checked)."""
    from mobilevision.checkpoint import load_checkpoint

    models, metas = [], []
    for path, task in zip(paths, ("multitask", "detection", "segmentation")):
        if not Path(path).is_file():
            raise UserError(f"--weights {path}: file not found")
        model, meta = load_checkpoint(path)
        if meta.task != task:
            raise UserError(
                f"--weights {path}: a {meta.task} checkpoint where the {task} model goes "
                "(order: joint, detector, segmenter)"
            )
        models.append(model)
        metas.append(meta)
    return models, metas


def _pair_timed(detector: Any, segmenter: Any, image: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
    """Both predictors on the same image: the detector's result with the segmenter's mask; stages summed, plus each
    predictor's own total."""
    boxes, det = detector.timed(image)
    mask, seg = segmenter.timed(image)
    stages = {key: det[key] + seg[key] for key in det}
    return {**boxes, "mask": mask["mask"]}, {**stages, "detector": sum(det.values()), "segmenter": sum(seg.values())}


def run(
    models: Sequence[nn.Module],
    metas: Sequence[Any],
    *,
    repeats: int,
    threads: Sequence[int] = (1,),
    score_threshold: float = SCORE_THRESHOLD,
    image_seed: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time the joint model against the pair at each thread count, both backends (see the module docstring)."""
    from mobilevision.inference.predictor import Predictor

    warnings.filterwarnings("ignore")
    size = tuple(metas[0].input_size)
    image = busy_image(size, seed=image_seed)  # type: ignore[arg-type]
    joint = models[0]
    results: dict[str, Any] = {
        "input_size": list(size),
        "width_mult": float(joint.backbone.width_mult),
        "num_classes": int(joint.num_classes),
        "mask_classes": int(joint.seg_num_classes),
        "score_threshold": score_threshold,
        "repeats": repeats,
        "runs": [],
    }
    agree = True
    for n in threads:
        torch.set_num_threads(n)
        pipelines: dict[str, Any] = {}
        for backend in ("torch", "onnxruntime"):
            make = partial(Predictor, backend=backend, num_threads=n, score_threshold=score_threshold, input_size=size)
            predictors = [make(model, meta=meta) for model, meta in zip(models, metas)]
            pipelines[f"joint {backend}"] = partial(predictors[0].timed, image)
            pipelines[f"pair {backend}"] = partial(_pair_timed, predictors[1], predictors[2], image)
        stages, last = interleaved(pipelines, repeats=repeats, warmup=2)
        table = {name: {k: median_ms(v) for k, v in s.items()} for name, s in stages.items()}
        counts = {name: len(result["scores"]) for name, result in last.items()}
        masks = {
            backend: float((last[f"joint {backend}"]["mask"] == last[f"pair {backend}"]["mask"]).mean())
            for backend in ("torch", "onnxruntime")
        }
        ratios = {
            backend: {
                stage: table[f"joint {backend}"][stage] / table[f"pair {backend}"][stage]
                for stage in ("forward", "end_to_end")
            }
            for backend in ("torch", "onnxruntime")
        }
        same = all(counts[f"{kind} torch"] == counts[f"{kind} onnxruntime"] for kind in ("joint", "pair"))
        agree &= same
        log(
            f"\n== {n} thread(s): {size[0]}x{size[1]} RGB uint8 image -> boxes + mask, width "
            f"{results['width_mult']:g}, {results['num_classes']} detector + {results['mask_classes']} mask classes, "
            f"score threshold {score_threshold}, medians of {repeats} interleaved runs (ms) =="
        )
        log(f"{'pipeline':<42}{'preprocess':>11}{'forward':>9}{'postproc':>10}{'end-to-end':>12}{'detections':>12}")
        for backend in ("torch", "onnxruntime"):
            for kind in ("joint", "pair"):
                row = table[f"{kind} {backend}"]
                label = f"{kind} {backend}" + (" (detector + segmenter)" if kind == "pair" else "")
                log(
                    f"{label:<42}{row['preprocess']:>11.2f}{row['forward']:>9.2f}{row['postprocess']:>10.2f}"
                    f"{row['end_to_end']:>12.2f}{counts[f'{kind} {backend}']:>12}"
                )
            pair = table[f"pair {backend}"]
            log(f"{'  detector alone, segmenter alone':<42}{'':>30}{pair['detector']:>6.2f}, {pair['segmenter']:.2f}")
            log(
                f"  ratio joint / pair ({backend}): forward {ratios[backend]['forward']:.2f}, end-to-end "
                f"{ratios[backend]['end_to_end']:.2f}; masks agree on "
                f"{100 * masks[backend]:.2f}% of pixels"
            )
        log("detection counts agree across backends" if same else f"DETECTION COUNTS DIFFER: {counts}")
        results["runs"].append(
            {
                "threads": n,
                "stages_ms": table,
                "detections": counts,
                "counts_agree": same,
                "ratio_joint_over_pair": ratios,
                "mask_agreement_joint_vs_pair": masks,
            }
        )
    results["counts_agree"] = agree
    return results


def main(argv: Sequence[str]) -> int:
    parser = common.parser("multitask", __doc__)
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="paper",
        help="model settings: the paper's (width 1.0, 81 + 21 classes, 320) or the shapes demo's",
    )
    parser.add_argument("--width", type=float, default=None, help="width multiplier (default: the preset's)")
    parser.add_argument("--input-size", type=int, default=None, help="square input size (default: the preset's)")
    parser.add_argument("--num-classes", type=int, default=None, help="detector classes incl. background")
    parser.add_argument("--mask-classes", type=int, default=None, help="segmentation classes incl. background")
    parser.add_argument(
        "--weights",
        type=Path,
        nargs=3,
        metavar=("JOINT", "DETECTOR", "SEGMENTER"),
        default=None,
        help="trained checkpoints instead of calibrated untrained models (the joint's input size)",
    )
    common.add_timing(parser)
    parser.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD)
    parser.add_argument("--calibration-images", type=int, default=32, help="BatchNorm calibration images (untrained)")
    common.add_json(parser, "--out")
    args = parser.parse_args(list(argv))
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        parser.error("--repeats and --threads must be >= 1")
    if args.calibration_images < 2:  # BatchNorm statistics of the 1x1 maps need more than one value
        parser.error(f"--calibration-images must be >= 2, got {args.calibration_images}")
    if args.input_size is not None and args.input_size < 32:
        parser.error(f"--input-size must be at least 32, got {args.input_size}")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.weights is not None:
        if any(v is not None for v in (args.width, args.num_classes, args.mask_classes)):
            parser.error("--width, --num-classes and --mask-classes go with presets (checkpoints know their own)")
        models, metas = load_models(args.weights)
        if args.input_size is not None:
            metas = [replace(meta, input_size=(args.input_size, args.input_size)) for meta in metas]
        else:  # the same input everywhere: the joint model's
            metas = [replace(meta, input_size=metas[0].input_size) for meta in metas]
    else:
        preset = PRESETS[args.preset]
        overrides = {
            "width": args.width,
            "input_size": args.input_size,
            "num_classes": args.num_classes,
            "mask_classes": args.mask_classes,
        }
        preset = replace(preset, **{k: v for k, v in overrides.items() if v is not None})
        models, metas = build_models(preset, calibration_images=args.calibration_images)
    results = run(models, metas, repeats=args.repeats, threads=args.threads, score_threshold=args.score_threshold)
    results["models"] = (
        [str(p) for p in args.weights]
        if args.weights
        else f"preset {args.preset}, untrained, BatchNorm calibrated on {args.calibration_images} generated images"
    )
    return common.finish(results, args.out, ok=results["counts_agree"])
