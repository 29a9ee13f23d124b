"""`mobilevision evaluate detection`: a COCO results file scored against a COCO ground truth (the task table's
`evaluate` entry of the detection task)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from mobilevision.tasks.detection.evaluation import (
    EVAL_BACKENDS,
    evaluate_coco,
    format_metrics,
    results_warnings,
    validate_results,
)


def main(argv: Sequence[str]) -> int:
    """`mobilevision evaluate detection --gt ANNOTATIONS.json|DATASET_DIR --predictions RESULTS.json [--json]`.

    `--gt` a user folder (VOC XML, YOLO, COCO; read as training reads it) with `--split-list RUN/splits/val.txt`
    scores the held-out images of a run. When the results' image ids are not the ground truth's (predict on a
    folder numbers its images 1..N), they are matched by file name through the `images.json` predict wrote beside
    them, and only the matched ground-truth images are scored.
    """
    from mobilevision.tasks.detection.data import coco_from_dict, load_json, validate_coco
    from mobilevision.tasks.detection.match_names import ground_truth_of_folder, remap_results

    parser = argparse.ArgumentParser(prog="mobilevision evaluate detection", description=main.__doc__)
    parser.add_argument("--gt", required=True, help="COCO-format ground truth json, or a dataset folder")
    parser.add_argument("--split-list", help="with a folder --gt: the file names to score (a run's splits/val.txt)")
    parser.add_argument(
        "--images", help="predict's images.json (id, file_name) to match by file name (default: beside the results)"
    )
    parser.add_argument("--predictions", required=True, help="results json: [{image_id, category_id, bbox, score}]")
    parser.add_argument("--json", action="store_true", help="print the 12 numbers as JSON")
    parser.add_argument("--per-class", action="store_true", help="with --json, add the per-class AP list")
    parser.add_argument("--verbose", action="store_true", help="show COCOeval's own output")
    parser.add_argument(
        "--backend",
        choices=EVAL_BACKENDS,
        default="pycocotools",
        help="COCOeval implementation: pycocotools, or faster-coco-eval (same numbers, faster)",
    )
    args = parser.parse_args(list(argv))
    if Path(args.gt).is_dir():
        gt, what = ground_truth_of_folder(args.gt, args.split_list)
        print(f"mobilevision evaluate detection: ground truth {what}", file=sys.stderr)
    elif args.split_list:
        parser.error("--split-list goes with a dataset folder as --gt")
    else:
        gt = load_json(args.gt)
    coco_gt = coco_from_dict(validate_coco(gt, args.gt))
    results = load_json(args.predictions)
    image_ids = None
    images_json = Path(args.images) if args.images else Path(args.predictions).with_name("images.json")
    if isinstance(results, list) and images_json.is_file():
        remapped, matched, unmatched = remap_results(results, coco_gt.dataset["images"], images_json)
        known = set(coco_gt.getImgIds())
        if matched:
            results, image_ids = remapped, matched
            print(
                f"mobilevision evaluate detection: {len(matched)} predicted images matched to the ground truth by "
                f"file name ({images_json}); scoring those",
                file=sys.stderr,
            )
            if unmatched:
                print(
                    f"mobilevision evaluate detection: warning: {len(unmatched)} predicted images are not in the "
                    f"ground truth (e.g. {unmatched[0]})",
                    file=sys.stderr,
                )
        elif not all(isinstance(r, dict) and r.get("image_id") in known for r in results):
            parser.exit(
                2, f"mobilevision evaluate detection: error: {images_json}: none of its file names is in {args.gt}\n"
            )
    if isinstance(results, list):
        # Structure first (a malformed entry is an error, named); then the format mistakes that score near 0.
        with warnings.catch_warnings():  # evaluate_coco validates again and warns then: once is enough
            warnings.simplefilter("ignore")
            validate_results(coco_gt, results, source=args.predictions)
        for message in results_warnings(coco_gt, results):
            print(f"mobilevision evaluate detection: warning: {args.predictions}: {message}", file=sys.stderr)
    metrics = evaluate_coco(
        coco_gt,
        results,
        per_class=True,
        verbose=args.verbose,
        source=args.predictions,
        backend=args.backend,
        image_ids=image_ids,
    )
    if args.json:
        if not args.per_class:
            metrics.pop("per_class")
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics))
    return 0
