"""`mobilevision evaluate detection`: a COCO results file scored against a COCO ground truth (the task table's
`evaluate` entry of the detection task)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

from mobilevision.tasks.detection.evaluation import (
    EVAL_BACKENDS,
    evaluate_coco,
    format_metrics,
    results_warnings,
    validate_results,
)


def main(argv: Sequence[str]) -> int:
    """`mobilevision evaluate detection --gt ANNOTATIONS.json --predictions RESULTS.json [--json]`."""
    from mobilevision.tasks.detection.data import coco_from_dict, load_json, validate_coco

    parser = argparse.ArgumentParser(prog="mobilevision evaluate detection", description=main.__doc__)
    parser.add_argument("--gt", required=True, help="COCO-format ground truth json")
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
    coco_gt = coco_from_dict(validate_coco(load_json(args.gt), args.gt))
    results = load_json(args.predictions)
    if isinstance(results, list):
        # Structure first (a malformed entry is an error, named); then the format mistakes that score near 0.
        with warnings.catch_warnings():  # evaluate_coco validates again and warns then: once is enough
            warnings.simplefilter("ignore")
            validate_results(coco_gt, results, source=args.predictions)
        for message in results_warnings(coco_gt, results):
            print(f"mobilevision evaluate detection: warning: {args.predictions}: {message}", file=sys.stderr)
    metrics = evaluate_coco(
        coco_gt, results, per_class=True, verbose=args.verbose, source=args.predictions, backend=args.backend
    )
    if args.json:
        if not args.per_class:
            metrics.pop("per_class")
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics))
    return 0
