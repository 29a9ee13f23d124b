"""`mobilevision benchmark predictor`: our Predictor against the same network in torchvision's SSD pipeline, in a
state that produces detections, at the thresholds users run.

Network: SSDLite on MobileNetV2 (width 1.0, 81 classes, input 320x320, 6 default boxes per location on every map,
what torchvision's `DefaultBoxGenerator([[2, 3]] * 6)` produces), with BatchNorm statistics *calibrated* on
generated photo-like images (the shapes generator: textured noisy backgrounds, clutter, filled shapes; every
BatchNorm in train mode with `momentum=None`, i.e. the plain average over 32 images): an untrained network with fresh
BatchNorm statistics scores every box about 1/81, nothing passes 0.3 and post-processing is never exercised. After
calibration a busy image gives tens of detections above 0.3 and the 100-detection cap at 0.01. `--weights CKPT`
benchmarks a trained mobilevision checkpoint instead (softmax detectors; its own default boxes).

Pipelines, same weights (the raw head outputs are checked equal first):
  torchvision SSD (eager)  `torchvision.models.detection.ssd.SSD` assembled from its parts: a backbone module
                           returning our taps + extra layers, torchvision's `SSDLiteHead` holding a copy of our head's
                           weights, `DefaultBoxGenerator` (or our default boxes for a checkpoint with other ones), SSD's
                           `GeneralizedRCNNTransform` at 320x320, the same post-processing parameters (score threshold
                           of the regime, NMS 0.6, top-k 200 per class, 100 detections).
  ours torch               `Predictor(backend="torch")`: BatchNorm folded, channels-last.
  ours onnxruntime         `Predictor(backend="onnxruntime")`: the exported graph in a tuned session.
  ours onnxruntime int8    (with `--int8`) the same graph statically quantized (`mobilevision export --int8`),
                           calibrated on 32 generated images; approximate, so its count may differ.
Input: the same RGB uint8 HWC numpy array, a 480x640 busy image resized once beforehand (cv2 INTER_AREA) to the
network's input size (320x320), to every pipeline. What each does with it (the "preprocess" column): torchvision:
`torch.from_numpy` -> CHW permute -> float /255 -> its transform (normalise, bilinear "resize" to the same size,
batch); ours: no resize, then a channels-last uint8 tensor view (torch; normalisation is in the network) or float32
NCHW (onnxruntime). At the input size both networks see the same
pixels, so the detections can be compared one to one; an untrained network amplifies the difference between cv2's
uint8 resize and torchvision's float resize, and from a 480x640 image the two pipelines agree on a handful of boxes.
The preprocessing of a 480x640 array (resize included) is timed apart, interleaved, and printed below the tables.

Regimes: "busy, 0.3" (an image with 40 shapes on clutter, score threshold 0.3) and "COCO eval, 0.01" (the same
image at 0.01, COCO evaluation's threshold: ~100,000 (anchor, class) pairs above it). Per pipeline the detection count
(the pipelines must agree: printed, and the command fails otherwise), and the stage times *and* end-to-end time from
the same calls (`timed`: end-to-end is the wall time around the call, so it includes the glue between stages).
Runs are interleaved (one call of each pipeline in turn), medians reported; ratios are ours / torchvision
end-to-end, and ours end-to-end / ours forward.

Also measured: `Predictor.stream` over a generated 300-frame video, RSS growth from frame 50 to frame 300.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark predictor` (options: --repeats, --threads, --weights, --int8,
--stream-frames, --json). Measured numbers (with the machine's load) are in docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import gc
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.benchmarks import common
from mobilevision.benchmarks.calibration import calibrate_batchnorm
from mobilevision.benchmarks.images import IMAGE_SHAPE, busy_image, photo_like_images
from mobilevision.benchmarks.quantized import int8_model
from mobilevision.benchmarks.timing import interleaved, median_ms
from mobilevision.benchmarks.twin import INPUT_SIZE, NUM_CLASSES, SCORE_THRESHOLD, TorchvisionPipeline, build_pair
from mobilevision.errors import UserError

INT8 = "ours onnxruntime int8"
# (name, score threshold): a user's busy frame at the usual display threshold, and COCO evaluation's threshold.
REGIMES: tuple[tuple[str, float], ...] = (("busy, 0.3", 0.3), ("COCO eval, 0.01", 0.01))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stream_memory_check(predictor: Any, *, frames: int = 300, size: tuple[int, int] = IMAGE_SHAPE) -> dict[str, float]:
    """Write a `frames`-frame MJPG video, stream it through `predictor`; RSS at frame 50 and the max after it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.avi"
        h, w = size
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for i in range(frames):
            frame = np.roll(base, 4 * i, axis=1)
            cv2.rectangle(frame, (20 + i % 200, 40), (120 + i % 200, 160), (0, 0, 255), -1)
            writer.write(frame)
        writer.release()
        gc.collect()
        rss_50, peak, count = float("nan"), 0.0, 0
        start = time.perf_counter()
        for index, _frame, _result in predictor.stream(str(path)):
            count += 1
            if index == 50:
                rss_50 = _rss_mb()
            if index >= 50:
                peak = max(peak, _rss_mb())
        elapsed = time.perf_counter() - start
    return {
        "frames": count,
        "rss_at_50_mb": rss_50,
        "rss_max_after_50_mb": peak,
        "growth_mb": peak - rss_50,
        "fps": count / elapsed,
    }


def _count(result: dict[str, Any]) -> int:
    return int(len(result["scores"]))


def _as_tensors(result: dict[str, Any]) -> dict[str, Tensor]:
    return {k: torch.as_tensor(np.asarray(result[k])) for k in ("boxes", "scores", "labels")}


def _resize_times(ssd: nn.Module, predictor: Any, repeats: int) -> dict[str, float]:
    """Median preprocess time of a 480x640 RGB uint8 array: torchvision's (tensor, float, transform with its
    bilinear resize) and our Predictor's (cv2.resize, layout)."""
    image = busy_image(IMAGE_SHAPE, seed=2)
    times: dict[str, list[float]] = {"torchvision": [], "ours onnxruntime": []}
    with torch.inference_mode():
        for _ in range(repeats + 3):
            start = time.perf_counter()
            ssd.transform([torch.from_numpy(image).permute(2, 0, 1).float().div_(255)])
            times["torchvision"].append(time.perf_counter() - start)
            start = time.perf_counter()
            predictor.preprocess([image])
            times["ours onnxruntime"].append(time.perf_counter() - start)
    return {name: median_ms(values[3:]) for name, values in times.items()}


def prepare(
    weights: Path | None = None,
    *,
    width_mult: float = 1.0,
    num_classes: int = NUM_CLASSES,
    calibration_images: int = 32,
) -> tuple[nn.Module, nn.Module, Any]:
    """(our Detector, torchvision SSD twin, ModelMeta or None): a checkpoint's, or a fresh SSDLite whose BatchNorm is
    calibrated on `calibration_images` generated photo-like images at the input size."""
    meta = None
    if weights is not None:
        from mobilevision.checkpoint import load_checkpoint
        from mobilevision.models.detector import Detector

        model, meta = load_checkpoint(weights)
        if not isinstance(model, Detector):
            raise UserError(f"{weights}: not a detector checkpoint (benchmark predictor compares detection pipelines)")
        if getattr(model, "classification", "softmax") != "softmax":
            raise UserError(
                f"{weights}: scores with sigmoid; torchvision's SSD post-processing is softmax only, so "
                "the two pipelines cannot run the same detector"
            )
        ours, ssd = build_pair(model, input_size=meta.input_size)
        return ours, ssd, meta
    torch.manual_seed(0)  # the same network (hence the same detections) on every run
    ours, _ = build_pair(num_classes=num_classes, width_mult=width_mult)
    calibrate_batchnorm(ours, photo_like_images(calibration_images, INPUT_SIZE, seed=0))
    ours, ssd = build_pair(ours)  # the twin copies the calibrated statistics
    return ours, ssd, meta


def run(
    *,
    repeats: int,
    threads: Sequence[int],
    stream_frames: int,
    width_mult: float = 1.0,
    weights: Path | None = None,
    regimes: Sequence[tuple[str, float]] = REGIMES,
    calibration_images: int = 32,
    int8: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both regimes at each thread count (see the module docstring); returns the numbers printed.

    `int8` adds a row: our int8 ONNX model (QDQ, calibrated on 32 generated images) through `Predictor`; its
    detection count is printed but not required to equal the fp32 pipelines'.
    """
    with tempfile.TemporaryDirectory() as tmp:
        return _run(
            repeats=repeats,
            threads=threads,
            stream_frames=stream_frames,
            width_mult=width_mult,
            weights=weights,
            regimes=regimes,
            calibration_images=calibration_images,
            int8_folder=Path(tmp) if int8 else None,
            log=log,
        )


def _run(
    *,
    repeats: int,
    threads: Sequence[int],
    stream_frames: int,
    width_mult: float,
    weights: Path | None,
    regimes: Sequence[tuple[str, float]],
    calibration_images: int,
    int8_folder: Path | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from mobilevision.inference.predictor import Predictor
    from mobilevision.tasks.detection.parity import match_detections

    warnings.filterwarnings("ignore")
    ours, ssd, meta = prepare(weights, width_mult=width_mult, calibration_images=calibration_images)
    int8_path = int8_model(ours, meta, int8_folder) if int8_folder is not None else None
    input_size = tuple(meta.input_size) if meta is not None else INPUT_SIZE
    # At the network's input size: neither pipeline resizes, so both run the network on the same pixels and must
    # find the same detections (an untrained network amplifies the differences between cv2's uint8 resize and
    # torchvision's float one: on a 480x640 image the two agree on a handful of boxes). Resizing is timed apart.
    image = cv2.resize(busy_image(IMAGE_SHAPE), (input_size[1], input_size[0]), interpolation=cv2.INTER_AREA)
    results: dict[str, Any] = {
        "image": list(input_size),
        "input_size": list(input_size),
        "num_classes": ours.num_classes,
        "weights": str(weights)
        if weights
        else f"untrained, BatchNorm calibrated on {calibration_images} generated images",
        "repeats": repeats,
        "runs": [],
    }
    agree = True
    for n in threads:
        torch.set_num_threads(n)
        for regime, threshold in regimes:
            ssd.score_thresh = threshold
            pipelines: dict[str, Any] = {
                "torchvision SSD (eager)": TorchvisionPipeline(ssd),
                "ours torch": Predictor(
                    copy.deepcopy(ours), backend="torch", num_threads=n, meta=meta, score_threshold=threshold
                ),
                "ours onnxruntime": Predictor(
                    copy.deepcopy(ours), backend="onnxruntime", num_threads=n, meta=meta, score_threshold=threshold
                ),
            }
            if int8_path is not None:
                pipelines[INT8] = Predictor(int8_path, num_threads=n, score_threshold=threshold)
            stages, last = interleaved(
                {name: partial(pipe.timed, image) for name, pipe in pipelines.items()}, repeats=repeats, warmup=3
            )
            table = {name: {k: median_ms(v) for k, v in s.items()} for name, s in stages.items()}
            counts = {name: _count(result) for name, result in last.items()}
            reference = last["torchvision SSD (eager)"]
            matched = {
                name: int(match_detections(_as_tensors(result), _as_tensors(reference), iou=0.9, pixels=1.0)[0].sum())
                for name, result in last.items()
            }
            # int8 is approximate by design: its count is printed, not required to agree.
            same_counts = len({c for name, c in counts.items() if name != INT8}) == 1
            agree &= same_counts
            tv_ms = table["torchvision SSD (eager)"]["end_to_end"]
            log(
                f"\n== {n} thread(s), {regime}: {input_size[0]}x{input_size[1]} RGB uint8 HWC array -> detections "
                f"(no resize), {ours.num_classes} classes, medians of {repeats} interleaved runs (ms) =="
            )
            log(
                f"{'pipeline':<26}{'preprocess':>11}{'forward':>9}{'postproc':>10}{'end-to-end':>12}"
                f"{'/torchvision':>13}{'/own forward':>13}{'detections':>12}{'matched':>9}"
            )
            for name, row in table.items():
                log(
                    f"{name:<26}{row['preprocess']:>11.2f}{row['forward']:>9.2f}{row['postprocess']:>10.2f}"
                    f"{row['end_to_end']:>12.2f}{row['end_to_end'] / tv_ms:>13.2f}"
                    f"{row['end_to_end'] / row['forward']:>13.2f}{counts[name]:>12}{matched[name]:>9}"
                )
            log("detection counts agree" if same_counts else f"DETECTION COUNTS DIFFER: {counts}")
            results["runs"].append(
                {
                    "threads": n,
                    "regime": regime,
                    "score_threshold": threshold,
                    "stages_ms": table,
                    "detections": counts,
                    "matched_to_torchvision": matched,
                    "counts_agree": same_counts,
                    "ratio_vs_torchvision": {k: v["end_to_end"] / tv_ms for k, v in table.items()},
                    "ratio_vs_own_forward": {k: v["end_to_end"] / v["forward"] for k, v in table.items()},
                }
            )
        results["resize_480x640_ms"] = _resize_times(ssd, pipelines["ours onnxruntime"], repeats)
        log(
            "preprocess of a 480x640 image (resize included), same array, interleaved medians (ms): "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in results["resize_480x640_ms"].items())
        )
    results["counts_agree"] = agree
    if stream_frames > 0:
        torch.set_num_threads(threads[0])
        stream_predictor = Predictor(
            copy.deepcopy(ours),
            backend="onnxruntime",
            num_threads=threads[0],
            meta=meta,
            score_threshold=SCORE_THRESHOLD,
        )
        memory = stream_memory_check(stream_predictor, frames=stream_frames)
        results["stream"] = memory
        log(
            f"\nPredictor.stream over a generated {memory['frames']}-frame 480x640 video (onnxruntime): RSS "
            f"{memory['rss_at_50_mb']:.1f} MB at frame 50, max {memory['rss_max_after_50_mb']:.1f} MB after -> "
            f"growth {memory['growth_mb']:.1f} MB (target < 100), {memory['fps']:.1f} frames/s"
        )
    return results


def main(argv: Sequence[str]) -> int:
    parser = common.parser("predictor", __doc__)
    common.add_timing(parser)
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="a trained detector checkpoint (default: untrained, BatchNorm calibrated)",
    )
    parser.add_argument("--stream-frames", type=int, default=300, help="frames of the memory check (0 skips it)")
    parser.add_argument("--width-mult", type=float, default=1.0, help="width multiplier (1.0 is the paper's model)")
    parser.add_argument("--int8", action="store_true", help="add our int8 ONNX model (calibrated on generated images)")
    common.add_json(parser)
    args = parser.parse_args(list(argv))
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        parser.error(f"--repeats and --threads must be >= 1, got {args.repeats} and {args.threads}")
    common.check_weights(args.weights)
    results = run(
        repeats=args.repeats,
        threads=args.threads,
        stream_frames=args.stream_frames,
        width_mult=args.width_mult,
        weights=args.weights,
        int8=args.int8,
    )
    return common.finish(results, args.json, ok=results["counts_agree"])
