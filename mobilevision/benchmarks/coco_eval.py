"""`mobilevision benchmark coco-eval`: pycocotools' COCOeval against faster-coco-eval on a generated COCO set.

Validation at threshold 0.01 hands COCOeval up to 100 detections per image (val2017: 5,000 images, so up to
500,000), and pycocotools' Python loops then take minutes. The generated set imitates that: `--images` images with
COCO's category ids (80 of 1..90), 1-15 objects each from small to large, a few crowd regions; per object up to
four detections (one good, the others shifted or of the wrong class, as a detector's near-duplicates that NMS of a
different class keeps) and false positives, up to `--max-dets` per image, scores spread from 0.01 to 1.
Both backends score the same dicts, interleaved, `--repeats` times, timed two ways: `evaluate_coco` as a user calls
it (our results validation included: the same Python for both) and the evaluation alone (results index, evaluate,
accumulate, summarize: what the backend changes). The 12 numbers must be equal (printed); medians are reported.

Command: `OMP_NUM_THREADS=1 mobilevision benchmark coco-eval` (options: --images, --max-dets, --repeats, --json).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mobilevision.benchmarks import common

# COCO's 80 category ids (1..90 with gaps): the benchmark exercises the same non-contiguous ids a val2017 run does.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def synthetic_coco(
    *, num_images: int = 500, max_dets: int = 100, seed: int = 0, size: tuple[int, int] = (480, 640)
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground-truth dict and a bbox results list for it (see the module docstring).

    Returns:
        (`{"images", "annotations", "categories"}`, `[{image_id, category_id, bbox: [x, y, w, h], score}]`).
    """
    rng = np.random.default_rng(seed)
    height, width = size
    categories = [{"id": c, "name": f"class_{c}"} for c in COCO_CATEGORY_IDS]
    images = [
        {"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": width, "height": height} for i in range(num_images)
    ]
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image in images:
        dets: list[dict[str, Any]] = []
        for _ in range(int(rng.integers(1, 16))):
            side = float(np.exp(rng.uniform(np.log(8), np.log(400))))  # small (< 32^2) to large (> 96^2)
            w, h = min(side * rng.uniform(0.6, 1.4), width - 1), min(side * rng.uniform(0.6, 1.4), height - 1)
            x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            category = int(rng.choice(COCO_CATEGORY_IDS))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.03),
                }
            )
            for copy in range(int(rng.integers(1, 5))):
                jitter = rng.normal(0, (0.05 if copy == 0 else 0.25) * side, 4)
                wrong = copy > 0 and rng.random() < 0.5
                dets.append(
                    {
                        "image_id": image["id"],
                        "category_id": int(rng.choice(COCO_CATEGORY_IDS)) if wrong else category,
                        "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                        "score": float(rng.uniform(0.3, 1.0) if copy == 0 else rng.uniform(0.01, 0.6)),
                    }
                )
        while len(dets) < max_dets and rng.random() < 0.97:  # false positives, as a 0.01 threshold lets through
            w, h = float(rng.uniform(4, 200)), float(rng.uniform(4, 200))
            dets.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice(COCO_CATEGORY_IDS)),
                    "bbox": [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h],
                    "score": float(rng.uniform(0.01, 0.3)),
                }
            )
        dets.sort(key=lambda d: -d["score"])
        results += dets[:max_dets]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _evaluator_only(coco_gt: Any, results: list[dict[str, Any]], backend: str) -> None:
    """What `evaluate_coco` does after validating the results: build the results index, evaluate, accumulate,
    summarize (the part the backend changes)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from mobilevision.tasks.detection.evaluation import faster_eval, results_coco

    evaluator = (
        faster_eval(coco_gt, results)
        if backend == "faster"
        else COCOeval(coco_gt, results_coco(coco_gt, results), iouType="bbox")
    )
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()


def run(*, num_images: int, max_dets: int, repeats: int, log: Any = print) -> dict[str, Any]:
    """Time both backends on `synthetic_coco`: `evaluate_coco` as a user calls it (results validation included,
    the same Python for both) and the evaluation alone; the 12 numbers of each and the medians."""
    from mobilevision.tasks.detection.data import coco_from_dict
    from mobilevision.tasks.detection.evaluation import STAT_NAMES, evaluate_coco

    gt, results = synthetic_coco(num_images=num_images, max_dets=max_dets)
    coco_gt = coco_from_dict(gt)
    backends = ("pycocotools", "faster")
    times: dict[str, dict[str, list[float]]] = {b: {"evaluate_coco": [], "evaluation": []} for b in backends}
    stats: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for backend in backends:
            start = time.perf_counter()
            metrics = evaluate_coco(coco_gt, results, per_class=False, backend=backend)
            times[backend]["evaluate_coco"].append(time.perf_counter() - start)
            stats[backend] = {name: metrics[name] for name in STAT_NAMES}
            start = time.perf_counter()
            _evaluator_only(coco_gt, results, backend)
            times[backend]["evaluation"].append(time.perf_counter() - start)
    medians = {b: {k: statistics.median(v) for k, v in parts.items()} for b, parts in times.items()}
    equal = all(abs(stats["faster"][n] - stats["pycocotools"][n]) < 1e-12 for n in STAT_NAMES)
    log(
        f"generated COCO set: {num_images} images, {len(gt['annotations'])} objects, {len(results)} detections "
        f"(up to {max_dets} per image), 80 categories; medians of {repeats} interleaved runs, seconds"
    )
    log(f"{'backend':<14}{'evaluate_coco':>14}{'speed-up':>10}{'evaluation only':>17}{'speed-up':>10}")
    for backend, row in medians.items():
        ref = medians["pycocotools"]
        log(
            f"{backend:<14}{row['evaluate_coco']:>14.2f}{ref['evaluate_coco'] / row['evaluate_coco']:>10.1f}"
            f"{row['evaluation']:>17.2f}{ref['evaluation'] / row['evaluation']:>10.1f}"
        )
    log(
        "(evaluate_coco includes validating the results, the same Python for both backends; evaluation only is "
        "what the backend changes: results index, evaluate, accumulate, summarize)"
    )
    log("the 12 numbers: " + ", ".join(f"{n} {stats['pycocotools'][n]:.4f}" for n in STAT_NAMES))
    log(f"faster-coco-eval gives the same 12 numbers as pycocotools: {equal}")
    return {
        "images": num_images,
        "objects": len(gt["annotations"]),
        "detections": len(results),
        "seconds": medians,
        "stats": stats,
        "identical": equal,
        "speedup": {k: medians["pycocotools"][k] / medians["faster"][k] for k in ("evaluate_coco", "evaluation")},
    }


def main(argv: Sequence[str]) -> int:
    parser = common.parser("coco-eval", __doc__)
    parser.add_argument("--images", type=int, default=500, help="generated images")
    parser.add_argument("--max-dets", type=int, default=100, help="detections per image at most (COCO's cap)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per backend (medians reported)")
    common.add_json(parser)
    args = parser.parse_args(list(argv))
    if args.images < 1 or args.max_dets < 1 or args.repeats < 1:
        parser.error(
            f"--images, --max-dets and --repeats must be >= 1, got {args.images}, {args.max_dets}, {args.repeats}"
        )
    results = run(num_images=args.images, max_dets=args.max_dets, repeats=args.repeats)
    return common.finish(results, args.json, ok=results["identical"])
