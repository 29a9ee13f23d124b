"""`mobilevision benchmark throughput`: images per second in batches and frames per second on a video, ours
against the same network in torchvision's SSD pipeline (the pair of `mobilevision benchmark predictor`: the paper's
SSDLite, 81 classes, 320x320, BatchNorm calibrated so there are detections to post-process; score threshold 0.3).

- Batches: B photo-like 480x640 RGB uint8 images per call, B in `--batches` (1, 8, 32), at each `--threads` count
  (1, 2). Ours: `Predictor.predict_batch` (onnxruntime, resize + forward + post-processing of the whole batch);
  torchvision: `SSD([tensors])` on the same images (uint8 HWC -> float CHW / 255, its transform resizes and batches).
  Runs interleaved, medians; images/s = B / median seconds per call.
- Video: a generated 480x640 mp4 of `--frames` frames. Ours: `Predictor.stream(path)` (OpenCV decodes on a
  background thread, `CaptureSource`, while the network runs); torchvision: the plain loop a user writes (read a
  frame, convert, `SSD([tensor])`) in one thread. Frames/s over the whole video, decode included, alternating the two
  pipelines for `--rounds` rounds, medians.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark throughput` (the thread count of each row is set in-process).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mobilevision.benchmarks import common
from mobilevision.benchmarks.images import IMAGE_SHAPE, photo_like_images
from mobilevision.benchmarks.predictor import prepare
from mobilevision.benchmarks.timing import interleaved
from mobilevision.benchmarks.twin import SCORE_THRESHOLD


def _torchvision_batch(ssd: Any, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    with torch.inference_mode():
        return ssd([torch.from_numpy(image).permute(2, 0, 1).float().div_(255) for image in images])


def write_video(path: Path, frames: int, size: tuple[int, int] = IMAGE_SHAPE, fps: float = 25.0) -> Path:
    """A generated photo-like mp4 (mp4v) of `frames` frames of (h, w) `size`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for image in photo_like_images(frames, size, seed=3):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _torchvision_video(ssd: Any, path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            _torchvision_batch(ssd, [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])
            frames += 1
    finally:
        capture.release()


def _ours_video(predictor: Any, path: Path) -> int:
    return sum(1 for _ in predictor.stream(str(path)))


def run(
    *,
    batches: Sequence[int] = (1, 8, 32),
    threads: Sequence[int] = (1, 2),
    repeats: int = 5,
    frames: int = 100,
    rounds: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The measurements of the module docstring; returns the numbers printed."""
    from mobilevision.inference.predictor import Predictor

    warnings.filterwarnings("ignore")
    ours, ssd, meta = prepare()
    ssd.score_thresh = SCORE_THRESHOLD
    images = photo_like_images(max(batches), IMAGE_SHAPE, seed=5)
    results: dict[str, Any] = {"batches": [], "video": []}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "clip.mp4", frames) if frames > 0 else None
        for n in threads:
            torch.set_num_threads(n)
            predictor = Predictor(
                ours,
                backend="onnxruntime",
                num_threads=n,
                meta=meta,
                batch_size=max(batches),
                score_threshold=SCORE_THRESHOLD,
            )
            for size in batches:
                batch = images[:size]
                calls: dict[str, Callable[[], Any]] = {
                    "torchvision SSD": lambda b=batch: _torchvision_batch(ssd, b),
                    "ours onnxruntime": lambda b=batch, p=predictor: p.predict_batch(b),
                }
                stages, _ = interleaved(
                    {name: lambda c=call: (c(), {}) for name, call in calls.items()}, repeats=repeats
                )
                rate = {name: size / statistics.median(t["end_to_end"]) for name, t in stages.items()}
                row = {
                    "threads": n,
                    "batch": size,
                    "images_per_s": rate,
                    "ratio": rate["ours onnxruntime"] / rate["torchvision SSD"],
                }
                results["batches"].append(row)
                log(
                    f"{n} thread(s), batch {size:>2}: torchvision {rate['torchvision SSD']:7.1f} images/s, ours "
                    f"{rate['ours onnxruntime']:7.1f} images/s ({row['ratio']:.2f}x)"
                )
            if video is not None:
                fps: dict[str, list[float]] = {"torchvision SSD": [], "ours onnxruntime": []}
                for _ in range(rounds):
                    for name, loop in (
                        ("torchvision SSD", lambda: _torchvision_video(ssd, video)),
                        ("ours onnxruntime", lambda p=predictor: _ours_video(p, video)),
                    ):
                        start = time.perf_counter()
                        count = loop()
                        fps[name].append(count / (time.perf_counter() - start))
                rate = {name: statistics.median(v) for name, v in fps.items()}
                results["video"].append(
                    {
                        "threads": n,
                        "frames": frames,
                        "frames_per_s": rate,
                        "ratio": rate["ours onnxruntime"] / rate["torchvision SSD"],
                    }
                )
                log(
                    f"{n} thread(s), {frames}-frame 480x640 video: torchvision {rate['torchvision SSD']:6.1f} "
                    f"frames/s, ours {rate['ours onnxruntime']:6.1f} frames/s "
                    f"({rate['ours onnxruntime'] / rate['torchvision SSD']:.2f}x)"
                )
    return results


def main(argv: Sequence[str]) -> int:
    parser = common.parser("throughput", __doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="images per call (1 8 32)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts (1 2)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved calls per batch size (medians)")
    parser.add_argument("--frames", type=int, default=100, help="frames of the generated video (0 skips it)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating passes over the video (medians)")
    common.add_json(parser)
    args = parser.parse_args(list(argv))
    if min(args.batches) < 1 or min(args.threads) < 1 or args.repeats < 1 or args.rounds < 1 or args.frames < 0:
        parser.error("--batches, --threads, --repeats and --rounds must be >= 1, --frames >= 0")
    results = run(
        batches=args.batches, threads=args.threads, repeats=args.repeats, frames=args.frames, rounds=args.rounds
    )
    return common.finish(results, args.json)
