"""`mobilevision benchmark predictor`: our Predictor against the same network in torchvision's SSD pipeline.

Both pipelines run the *same weights*: SSDLite on MobileNetV2 (num_classes 81, untrained, input 320x320), taps
layer-15 expansion + layer 19 + four extra layers. Ours is `build_model("ssdlite_mobilenet_v2", num_classes=81,
default_boxes=DefaultBoxes(reduce_lowest=False))` (6 default boxes per location on every map, what torchvision's
`DefaultBoxGenerator([[2, 3]] * 6)` produces); torchvision's is `torchvision.models.detection.ssd.SSD` with a backbone
module returning our taps + extra layers as an OrderedDict, torchvision's `SSDLiteHead` holding a copy of our head's
weights, `DefaultBoxGenerator`, and SSD's own `GeneralizedRCNNTransform` at 320x320 (score 0.3, NMS 0.6, top-k 200,
100 detections: the same post-processing parameters as ours). The raw head outputs are checked equal first.

Input: one 480x640 RGB uint8 array (plus the JPEG decode of the same image, timed separately: the same function for
both). Stages per pipeline: decode, preprocess (ours: cv2 resize; torchvision: uint8 -> float tensor and its
transform), forward (backbone + head), postprocess (anchors, decoding, NMS, rescaling). Runs are interleaved (one run
of each pipeline in turn) and medians reported, per thread count; the ratio is ours / torchvision end-to-end.

Also measured: `Predictor.stream` over a generated 300-frame video, RSS growth from frame 50 to frame 300.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark predictor` (options: --repeats, --threads, --stream-frames).

Measured (`OMP_NUM_THREADS=1 mobilevision benchmark predictor --repeats 30 --threads 1`, 2-core VM shared with a
training job, load average 1.8-2.8), one thread, medians in ms:

    pipeline                                 preprocess  forward  postproc  end-to-end  ratio
    torchvision SSD (eager)                       12.41    83.89      7.48       92.09   1.00
    ours torch, no optimisation                    0.43    59.43      1.36       74.18   0.81
    ours torch, BN folded                          0.43    48.66      1.37       50.09   0.54
    ours torch, BN folded + channels-last          0.43    48.71      1.37       50.74   0.55
    ours onnxruntime                               0.56    28.32      1.51       30.63   0.33
    ours onnxruntime, default model                0.59    27.03      1.11       28.73   0.31
    decode (JPEG -> RGB, same function for both): 4.12

Best backend (onnxruntime) / torchvision end-to-end: 0.33 (an earlier run: 0.34). Predictor.stream over 300 frames:
RSS growth 0.1 MB from frame 50 to 300, 27.5 frames/s. Two-thread numbers need an idle machine: beside a training
job using both cores, torch with two threads oversubscribes and its latencies (0.5-0.9 s) measure the contention.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.io import atomic_write_json

IMAGE_SHAPE = (480, 640)
INPUT_SIZE = (320, 320)
NUM_CLASSES = 81
SCORE_THRESHOLD = 0.3


class _TapsAndExtras(nn.Module):
    """Our backbone taps followed by the head's extra layers, as torchvision's SSD expects from its backbone."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.extra = detector.head.extra

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        taps = self.backbone(x)
        maps = [taps[t] for t in self.backbone.out_taps]
        for layer in self.extra:
            maps.append(layer(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def build_pair(*, num_classes: int = NUM_CLASSES, width_mult: float = 1.0) -> tuple[nn.Module, nn.Module]:
    """(our Detector, torchvision SSD) with identical weights, both in eval mode."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    from mobilevision.models import build_model
    from mobilevision.tasks.detection.anchors import DefaultBoxes

    # class_prior=None: zero class biases like torchvision's head, so both score (and NMS) the same boxes.
    ours = build_model("ssdlite_mobilenet_v2", num_classes=num_classes, width_mult=width_mult,
                       default_boxes=DefaultBoxes(reduce_lowest=False), class_prior=None).eval()
    twin = copy.deepcopy(ours)
    head = SSDLiteHead(list(ours.head.map_channels), list(ours.default_boxes.num_anchors), num_classes,
                       norm_layer=nn.BatchNorm2d)
    theirs_sd = head.state_dict()
    ours_sd = {**{f"classification_head.module_list.{k[len('cls_heads.'):]}": v
                  for k, v in twin.head.state_dict().items() if k.startswith("cls_heads.")},
               **{f"regression_head.module_list.{k[len('box_heads.'):]}": v
                  for k, v in twin.head.state_dict().items() if k.startswith("box_heads.")}}
    # Same block structure (depthwise 3x3 + BN + ReLU6, then 1x1 with bias): keys map one to one.
    head.load_state_dict({k: ours_sd[k] for k in theirs_sd}, strict=True)
    anchors = DefaultBoxGenerator([[2, 3]] * len(ours.head.map_channels), min_ratio=0.2, max_ratio=0.95)
    ssd = SSD(_TapsAndExtras(twin), anchors, INPUT_SIZE, num_classes, head=head,
              image_mean=list(ours.normalize.mean), image_std=list(ours.normalize.std),
              score_thresh=SCORE_THRESHOLD, nms_thresh=ours.nms_threshold,
              detections_per_img=ours.detections_per_image, topk_candidates=ours.topk_candidates).eval()
    with torch.no_grad():
        x = torch.rand(1, 3, *INPUT_SIZE) * 255
        raw, _ = ours.forward_raw(x)
        tv = ssd.head(list(ssd.backbone(ours.normalize(x)).values()))
        diff = (raw["cls_logits"] - tv["cls_logits"]).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"the torchvision twin does not reproduce our head outputs (max diff {diff})")
    return ours, ssd


class _TorchvisionPipeline:
    """The user's path through torchvision: HWC uint8 -> float CHW in 0..1 -> SSD (transform, net, postprocess)."""

    def __init__(self, ssd: nn.Module) -> None:
        self.ssd = ssd

    def __call__(self, image: np.ndarray) -> dict[str, Tensor]:
        with torch.inference_mode():
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
            return self.ssd([tensor])[0]

    def timed(self, image: np.ndarray) -> tuple[dict[str, Tensor], dict[str, float]]:
        ssd = self.ssd
        with torch.inference_mode():
            t0 = time.perf_counter()
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
            images, _ = ssd.transform([tensor])
            t1 = time.perf_counter()
            features = list(ssd.backbone(images.tensors).values())
            head_outputs = ssd.head(features)
            t2 = time.perf_counter()
            anchors = ssd.anchor_generator(images, features)
            detections = ssd.postprocess_detections(head_outputs, anchors, images.image_sizes)
            detections = ssd.transform.postprocess(detections, images.image_sizes, [tuple(image.shape[:2])])
            t3 = time.perf_counter()
        return detections[0], {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}


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
    return {"frames": count, "rss_at_50_mb": rss_50, "rss_max_after_50_mb": peak, "growth_mb": peak - rss_50,
            "fps": count / elapsed}


def _median_ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values)


def run(*, repeats: int, threads: Sequence[int], stream_frames: int, width_mult: float = 1.0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    from mobilevision.data.decode import read_image
    from mobilevision.inference.optimize import fold_batchnorm
    from mobilevision.inference.predictor import Predictor

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    # A natural-ish image (smooth gradients + noise) so JPEG decoding costs what it costs on photos.
    yy, xx = np.mgrid[0:IMAGE_SHAPE[0], 0:IMAGE_SHAPE[1]]
    image = np.stack([(xx * 255 / IMAGE_SHAPE[1]), (yy * 255 / IMAGE_SHAPE[0]), ((xx + yy) % 256)], -1)
    image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    ours, ssd = build_pair(width_mult=width_mult)
    default_model = None
    results: dict[str, Any] = {"image": list(IMAGE_SHAPE), "input_size": list(INPUT_SIZE), "num_classes": NUM_CLASSES,
                               "score_threshold": SCORE_THRESHOLD, "repeats": repeats, "threads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "image.jpg"
        cv2.imwrite(str(jpeg), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        for n in threads:
            torch.set_num_threads(n)
            folded = copy.deepcopy(ours).eval()
            fold_batchnorm(folded)
            if default_model is None:
                from mobilevision.models import build_model

                default_model = build_model("ssdlite_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=width_mult,
                                            class_prior=None)
            pipelines: dict[str, Any] = {
                "torchvision SSD (eager)": _TorchvisionPipeline(ssd),
                "ours torch, no optimisation": Predictor(ours, backend="torch", optimize=False,
                                                         score_threshold=SCORE_THRESHOLD),
                "ours torch, BN folded": Predictor(folded, backend="torch", optimize=False,
                                                   score_threshold=SCORE_THRESHOLD),
                "ours torch, BN folded + channels-last": Predictor(ours, backend="torch",
                                                                   score_threshold=SCORE_THRESHOLD),
                "ours onnxruntime": Predictor(ours, backend="onnxruntime", num_threads=n,
                                              score_threshold=SCORE_THRESHOLD),
                "ours onnxruntime, default model": Predictor(default_model.eval(), backend="onnxruntime",
                                                             num_threads=n, score_threshold=SCORE_THRESHOLD),
            }
            stages: dict[str, dict[str, list[float]]] = {name: {} for name in pipelines}
            decode_times: list[float] = []
            for name, pipe in pipelines.items():  # warm-up (first-call allocations, oneDNN primitive caches)
                for _ in range(3):
                    pipe.timed(image)
            for _ in range(repeats):
                t = time.perf_counter()
                read_image(jpeg)
                decode_times.append(time.perf_counter() - t)
                for name, pipe in pipelines.items():
                    t = time.perf_counter()
                    pipe(image)
                    end_to_end = time.perf_counter() - t
                    _, parts = pipe.timed(image)
                    for key, value in {**parts, "end_to_end": end_to_end}.items():
                        stages[name].setdefault(key, []).append(value)
            table = {name: {k: _median_ms(v) for k, v in s.items()} for name, s in stages.items()}
            decode_ms = _median_ms(decode_times)
            reference = table["torchvision SSD (eager)"]["end_to_end"]
            best = min((n_ for n_ in table if n_.startswith("ours") and "default model" not in n_),
                       key=lambda k: table[k]["end_to_end"])
            results["threads"][str(n)] = {"decode_ms": decode_ms, "stages_ms": table, "best": best,
                                          "ratio_best_vs_torchvision": table[best]["end_to_end"] / reference}
            log(f"\n== {n} thread(s): 480x640 RGB uint8 -> detections, input 320x320, {NUM_CLASSES} classes, "
                f"score {SCORE_THRESHOLD}, medians of {repeats} interleaved runs (ms) ==")
            log(f"decode (JPEG -> RGB, same for all): {decode_ms:.2f}")
            log(f"{'pipeline':<40}{'preprocess':>11}{'forward':>9}{'postproc':>10}{'end-to-end':>12}{'img/s':>7}"
                f"{'ratio':>7}")
            for name, row in table.items():
                log(f"{name:<40}{row['preprocess']:>11.2f}{row['forward']:>9.2f}{row['postprocess']:>10.2f}"
                    f"{row['end_to_end']:>12.2f}{1000 / row['end_to_end']:>7.1f}{row['end_to_end'] / reference:>7.2f}")
            log(f"best: {best}: {table[best]['end_to_end']:.2f} ms vs torchvision {reference:.2f} ms "
                f"-> ratio {table[best]['end_to_end'] / reference:.2f} (target <= 0.50)")
        if stream_frames > 0:
            torch.set_num_threads(threads[0])
            stream_predictor = Predictor(ours, backend="onnxruntime", num_threads=threads[0],
                                         score_threshold=SCORE_THRESHOLD)
            memory = stream_memory_check(stream_predictor, frames=stream_frames)
            results["stream"] = memory
            log(f"\nPredictor.stream over a generated {memory['frames']}-frame 480x640 video (onnxruntime): RSS "
                f"{memory['rss_at_50_mb']:.1f} MB at frame 50, max {memory['rss_max_after_50_mb']:.1f} MB after -> "
                f"growth {memory['growth_mb']:.1f} MB (target < 100), {memory['fps']:.1f} frames/s")
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilevision benchmark predictor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="interleaved runs per pipeline (medians reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts")
    parser.add_argument("--stream-frames", type=int, default=300, help="frames of the memory check (0 skips it)")
    parser.add_argument("--width-mult", type=float, default=1.0, help="width multiplier (1.0 is the paper's model)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(list(argv))
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        parser.error(f"--repeats and --threads must be >= 1, got {args.repeats} and {args.threads}")
    results = run(repeats=args.repeats, threads=args.threads, stream_frames=args.stream_frames,
                  width_mult=args.width_mult)
    if args.json:
        atomic_write_json(args.json, results)
    return 0
