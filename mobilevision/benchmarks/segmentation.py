"""`mobilevision benchmark segmentation`: Mobile DeepLabv3 through our Predictor against torchvision's `deeplabv3`
head on the same backbone.

Ours: `build_model("deeplabv3_mobilenet_v2", num_classes=21)`, the paper's on-device model (Table 7, bold row: layer
18, 320 channels, output stride 16, reduced head = 1x1 branch + image pooling, 256 channels), or `--weights CKPT`.
Theirs: `torchvision.models.segmentation.deeplabv3.DeepLabV3` with a backbone module returning our tap (the same
MobileNetV2 weights, the same output stride) and torchvision's `DeepLabHead(320, C, atrous_rates=ours)`. Its ASPP
has our head's structure, so it holds a copy of our branch, image-pooling, projection and classifier weights (checked
equal on the ASPP output); torchvision's head adds a 3x3 256->256 convolution + BatchNorm + ReLU before the
classifier, which keeps its own initialisation. Without `--weights`, every BatchNorm's statistics (ours and that
extra one) are calibrated on generated photo-like images (`benchmark predictor` explains why).

Input: one RGB uint8 HWC array at the network's input size (512x512, the paper's MAdds size): no resize on either
side. Stages: torchvision: `torch.from_numpy`, CHW, float /255, `torchvision.transforms.functional.normalize`;
`model(x)["out"]` (head + bilinear upsampling to the input); `argmax` -> uint8 numpy. Ours: `Predictor.timed`
(torch: BatchNorm folded, channels-last; onnxruntime: the exported graph; with `--int8`, the graph statically
quantized as `mobilevision export --int8` does, calibrated on 32 generated images). Runs interleaved, medians, one
thread by default; ratio = ours / torchvision end-to-end, end-to-end being the wall time around the same call.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark segmentation` (options: --repeats, --threads, --weights, --size,
--int8, --json). Measured numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.benchmarks import common
from mobilevision.benchmarks.calibration import calibrate_batchnorm
from mobilevision.benchmarks.images import photo_like_images
from mobilevision.benchmarks.quantized import int8_model
from mobilevision.benchmarks.timing import interleaved, median_ms
from mobilevision.errors import UserError


class _Tap(nn.Module):
    """Our normalisation + backbone, returning the segmenter's tap as torchvision's `{"out": map}`."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.normalize = segmenter.normalize
        self.backbone = segmenter.backbone
        self.tap = segmenter.tap

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(out=self.backbone(x)[self.tap])


def build_pair(segmenter: nn.Module) -> nn.Module:
    """torchvision's DeepLabV3 on a copy of `segmenter`'s backbone with torchvision's DeepLabHead holding a copy of
    our head's weights where the shapes are the same (everything but its extra 3x3 convolution block). Eval mode.

    Its input is normalised float [B, 3, H, W] (torchvision's convention); ours takes 0..255.
    """
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    ours = segmenter.eval()
    twin = copy.deepcopy(ours)
    head = twin.head
    in_channels = twin.backbone.out_channels[twin.tap]
    if head.classifier.in_channels != 256:
        raise ValueError(f"torchvision's DeepLabHead is 256 channels wide; this head has {head.classifier.in_channels}")
    theirs = DeepLabHead(in_channels, twin.num_classes, atrous_rates=head.atrous_rates)
    aspp = theirs[0]
    for our_branch, their_branch in zip(head.branches[:-1], aspp.convs[:-1]):
        their_branch.load_state_dict(our_branch.state_dict())  # [conv, bn, relu]: the same keys
    pooling = head.branches[-1].conv
    aspp.convs[-1][1].load_state_dict(pooling[0].state_dict())
    aspp.convs[-1][2].load_state_dict(pooling[1].state_dict())
    aspp.project[0].load_state_dict(head.project[0].state_dict())
    aspp.project[1].load_state_dict(head.project[1].state_dict())
    theirs[4].load_state_dict(head.classifier.state_dict())
    model = DeepLabV3(_Tap(twin), theirs).eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64) * 255
        features = ours.backbone(ours.normalize(x))[ours.tap]
        branches = torch.cat([b(features) for b in head.branches], 1)
        diff = (head.project(branches) - aspp(features)).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"torchvision's ASPP does not reproduce ours (max diff {diff})")
    return model


class _TorchvisionSegmentation:
    """The user's path through torchvision: HWC uint8 -> normalised float CHW -> model(x)["out"] -> argmax."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        self.model, self.mean, self.std = model, list(mean), list(std)

    def timed(self, image: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        from torchvision.transforms.functional import normalize

        with torch.inference_mode():
            t0 = time.perf_counter()
            x = normalize(torch.from_numpy(image).permute(2, 0, 1).float().div_(255), self.mean, self.std)[None]
            t1 = time.perf_counter()
            logits = self.model(x)["out"]
            t2 = time.perf_counter()
            mask = logits[0].argmax(0).to(torch.uint8).numpy()
            t3 = time.perf_counter()
        return {"mask": mask}, {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}


def run(
    *,
    repeats: int,
    threads: Sequence[int],
    size: tuple[int, int] = (512, 512),
    weights: Path | None = None,
    calibration_images: int = 16,
    width_mult: float = 1.0,
    int8: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The table at each thread count (see the module docstring). `int8` adds our int8 ONNX model (static QDQ
    quantization calibrated on 32 generated images) as a row."""
    with tempfile.TemporaryDirectory() as tmp:
        return _run(
            repeats=repeats,
            threads=threads,
            size=size,
            weights=weights,
            calibration_images=calibration_images,
            width_mult=width_mult,
            int8_folder=Path(tmp) if int8 else None,
            log=log,
        )


def _run(
    *,
    repeats: int,
    threads: Sequence[int],
    size: tuple[int, int],
    weights: Path | None,
    calibration_images: int,
    width_mult: float,
    int8_folder: Path | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from mobilevision.checkpoint import ModelMeta
    from mobilevision.inference.predictor import Predictor

    warnings.filterwarnings("ignore")
    meta = None
    if weights is not None:
        from mobilevision.checkpoint import load_checkpoint

        ours, meta = load_checkpoint(weights)
        if meta.task != "segmentation":
            raise UserError(f"{weights}: not a segmentation checkpoint")
        size = tuple(meta.input_size)  # type: ignore[assignment]
        theirs = build_pair(ours)
    else:
        from mobilevision.models import build_model

        torch.manual_seed(0)
        ours = build_model("deeplabv3_mobilenet_v2", num_classes=21, width_mult=width_mult)
        images = photo_like_images(calibration_images, size, seed=0)
        calibrate_batchnorm(ours, images)
        theirs = build_pair(ours)
        # The extra block of torchvision's head gets statistics too; the shared layers see the same images (their
        # statistics come out the same, up to float rounding).
        norm_images = [np.ascontiguousarray(i) for i in images]
        calibrate_batchnorm(theirs, norm_images, forward=lambda batch: theirs(ours.normalize(batch)))
    image = photo_like_images(1, size, seed=99, objects=(12, 13))[0]
    int8_path = None
    if int8_folder is not None:
        int8_meta = dataclasses.replace(meta or ModelMeta.for_model(ours), input_size=size)
        int8_path = int8_model(ours, int8_meta, int8_folder)
    results: dict[str, Any] = {
        "input_size": list(size),
        "weights": str(weights)
        if weights
        else f"untrained, BatchNorm calibrated on {calibration_images} generated images",
        "repeats": repeats,
        "runs": [],
    }
    for n in threads:
        torch.set_num_threads(n)
        pipelines: dict[str, Any] = {
            "torchvision DeepLabV3 head (eager)": _TorchvisionSegmentation(
                theirs, ours.normalize.mean, ours.normalize.std
            ),
            "ours torch": Predictor(copy.deepcopy(ours), backend="torch", num_threads=n, meta=meta, input_size=size),
            "ours onnxruntime": Predictor(
                copy.deepcopy(ours), backend="onnxruntime", num_threads=n, meta=meta, input_size=size
            ),
        }
        if int8_path is not None:
            pipelines["ours onnxruntime int8"] = Predictor(int8_path, num_threads=n)
        stages, _ = interleaved(
            {name: partial(pipe.timed, image) for name, pipe in pipelines.items()}, repeats=repeats, warmup=2
        )
        table = {name: {k: median_ms(v) for k, v in s.items()} for name, s in stages.items()}
        reference = table["torchvision DeepLabV3 head (eager)"]["end_to_end"]
        log(
            f"\n== {n} thread(s): {size[0]}x{size[1]} RGB uint8 -> mask, 21 classes, output stride "
            f"{ours.output_stride}, medians of {repeats} interleaved runs (ms) =="
        )
        log(f"{'pipeline':<36}{'preprocess':>11}{'forward':>9}{'postproc':>10}{'end-to-end':>12}{'ratio':>7}")
        for name, row in table.items():
            log(
                f"{name:<36}{row['preprocess']:>11.2f}{row['forward']:>9.2f}{row['postprocess']:>10.2f}"
                f"{row['end_to_end']:>12.2f}{row['end_to_end'] / reference:>7.2f}"
            )
        results["runs"].append(
            {
                "threads": n,
                "stages_ms": table,
                "ratio_vs_torchvision": {k: v["end_to_end"] / reference for k, v in table.items()},
            }
        )
    return results


def main(argv: Sequence[str]) -> int:
    parser = common.parser("segmentation", __doc__)
    common.add_timing(parser)
    parser.add_argument("--weights", type=Path, default=None, help="a trained segmentation checkpoint")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[512, 512],
        metavar=("H", "W"),
        help="input size without --weights (a checkpoint uses its own)",
    )
    parser.add_argument("--int8", action="store_true", help="add our int8 ONNX model (calibrated on generated images)")
    common.add_json(parser)
    args = parser.parse_args(list(argv))
    if args.repeats < 1 or any(t < 1 for t in args.threads) or min(args.size) < 32:
        parser.error("--repeats and --threads must be >= 1 and --size at least 32x32")
    common.check_weights(args.weights)
    results = run(
        repeats=args.repeats, threads=args.threads, size=tuple(args.size), weights=args.weights, int8=args.int8
    )
    return common.finish(results, args.json)
