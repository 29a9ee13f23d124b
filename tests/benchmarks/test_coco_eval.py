"""The generated COCO set of `benchmark coco-eval`: thousands of detections, and both backends agree on it."""

from __future__ import annotations

import pytest

from mobilevision.benchmarks.coco_eval import run, synthetic_coco
from mobilevision.tasks.detection.data import coco_from_dict
from mobilevision.tasks.detection.evaluation import STAT_NAMES, evaluate_coco


def test_faster_backend_on_a_generated_set_of_thousands_of_detections() -> None:
    gt, results = synthetic_coco(num_images=60, seed=3)
    assert len(results) > 2000
    slow = evaluate_coco(coco_from_dict(gt), results, per_class=False)
    fast = evaluate_coco(coco_from_dict(gt), results, per_class=False, backend="faster")
    assert 0.05 < slow["map"] < 0.95
    assert [fast[name] for name in STAT_NAMES] == pytest.approx([slow[name] for name in STAT_NAMES], abs=1e-9)
    with pytest.raises(ValueError, match="backend"):
        evaluate_coco(coco_from_dict(gt), results, backend="fast")


def test_benchmark_reports_equal_numbers() -> None:
    lines: list[str] = []
    results = run(num_images=20, max_dets=50, repeats=1, log=lines.append)
    assert results["identical"] and results["detections"] > 300
    assert set(results["seconds"]) == {"pycocotools", "faster"}
    assert any("same 12 numbers as pycocotools: True" in line for line in lines)
