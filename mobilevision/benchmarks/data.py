"""`mobilevision benchmark data`: images/s of one data-loading worker (decode + SSD training augmentation to 320x320)
for our pipeline and an equivalent torchvision.transforms.v2 pipeline, interleaved in the same process.

    mobilevision benchmark data [--num-images 48] [--rounds 3] [--size 320] [--json]

Both pipelines run in this process with one thread (what each DataLoader worker has), on the same COCO-like JPEGs
(640x480, quality 92, generated shapes scenes with 1-8 boxes), one after the other in alternating order for several
rounds, so machine load hits both alike. Each does the same steps:

- ours: `CocoDetection(..., transforms=train_transforms(size))[i]` - safe decode (OpenCV, EXIF, checks), photometric
  distortion, zoom out (up to 4x, mean fill), min-IoU crop, flip, resize, to a uint8 [3, size, size] tensor;
- torchvision: `decode_jpeg(read_file(path))`, then `v2.RandomPhotometricDistort`, `v2.RandomZoomOut` (same fill and
  range), `v2.RandomIoUCrop`, `v2.RandomHorizontalFlip`, `v2.Resize((size, size))`, `v2.SanitizeBoundingBoxes`.

Both resizes are anti-aliased (OpenCV INTER_AREA when shrinking; torchvision's antialias=True), since after a 4x zoom
out the shrink is up to 8x and plain bilinear sampling would alias small objects away.

Measured on the 2-core shared CPU machine of this project (load average about 2 from other jobs), torch 2.14.1,
torchvision 0.29.1, albumentations 2.0.8, opencv 5.0.0, with `OMP_NUM_THREADS=1 mobilevision benchmark data`
(48 images x 3 rounds): ours 72.3 images/s per worker, torchvision.transforms.v2 21.5 images/s, ratio 3.36x.
The largest single cost in ours (cProfile) is the anti-aliased resize of zoomed canvases up to 16x the image area.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import torch

from mobilevision.benchmarks import common


def _ours(images: Path, annotations: Path, size: int) -> Callable[[int], Any]:
    from mobilevision.tasks.detection.data import CocoDetection, train_transforms

    dataset = CocoDetection(images, annotations, transforms=train_transforms(size, seed=0))
    return dataset.__getitem__


def _torchvision(images: Path, annotations: Path, size: int) -> Callable[[int], Any]:
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    from mobilevision.tasks.detection.transforms import MEAN_FILL

    coco = json.loads(annotations.read_text())
    per_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for image in coco["images"]:
        anns = per_image.get(image["id"], [])
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=torch.float32,
        ).reshape(-1, 4)
        labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        samples.append((images / image["file_name"], boxes, labels, (image["height"], image["width"])))
    pipeline = v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: MEAN_FILL, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.Resize((size, size), antialias=True),
            v2.SanitizeBoundingBoxes(),
        ]
    )

    def load(index: int) -> Any:
        path, boxes, labels, canvas = samples[index]
        image = tv_tensors.Image(decode_jpeg(read_file(str(path))))
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas), "labels": labels}
        return pipeline(image, target)

    return load


def run(*, num_images: int = 48, rounds: int = 3, size: int = 320, workdir: Path | None = None) -> dict[str, Any]:
    """Measure both pipelines; returns images/s per worker for each and ours / torchvision."""
    from mobilevision.data.shapes import generate_shapes

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = generate_shapes(
            Path(tmp) / "coco_like",
            num_images=num_images,
            seed=0,
            image_size=(480, 640),
            min_object_size=16,
            max_object_fraction=0.8,
        )
        loaders = {
            "mobilevision": _ours(paths.images, paths.annotations, size),
            "torchvision": _torchvision(paths.images, paths.annotations, size),
        }
        for load in loaders.values():  # warm-up: imports, first-call allocations, page cache
            for index in range(min(4, num_images)):
                load(index)
        seconds = dict.fromkeys(loaders, 0.0)
        for round_index in range(rounds):
            order = list(loaders) if round_index % 2 == 0 else list(reversed(loaders))
            for name in order:
                start = time.perf_counter()
                for index in range(num_images):
                    loaders[name](index)
                seconds[name] += time.perf_counter() - start
    total = num_images * rounds
    rates = {name: total / s for name, s in seconds.items()}
    return {
        "images": total,
        "size": size,
        "ours_images_per_s": rates["mobilevision"],
        "torchvision_images_per_s": rates["torchvision"],
        "ratio": rates["mobilevision"] / rates["torchvision"],
    }


def main(argv: Sequence[str]) -> int:
    """Print images/s per worker of both pipelines and their ratio."""
    parser = common.parser("data", __doc__)
    parser.description, parser.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    parser.add_argument("--num-images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv))
    result = run(num_images=args.num_images, rounds=args.rounds, size=args.size)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"decode + SSD augmentation to {args.size}x{args.size}, 640x480 JPEGs, 1 thread, "
            f"{result['images']} images each"
        )
        print(f"  mobilevision (cv2 + albumentations): {result['ours_images_per_s']:8.1f} images/s per worker")
        print(f"  torchvision.transforms.v2          : {result['torchvision_images_per_s']:8.1f} images/s per worker")
        print(f"  ratio ours / torchvision           : {result['ratio']:8.2f}x")
    return 0
