"""`benchmark int8` end to end on a small generated shapes split: both models evaluated on the held-out images with
the task's metric, agreement and forward times reported; calibration images must not be held-out ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mobilevision.benchmarks.int8 import run
from mobilevision.checkpoint import save_checkpoint
from mobilevision.data.shapes import generate_shapes
from mobilevision.errors import UserError
from tests.inference.models_for_tests import (
    detector_meta,
    multitask_meta,
    segmenter_meta,
    small_detector,
    small_multitask,
    small_segmenter,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root / "train", num_images=6, seed=1, image_size=(96, 96))
    generate_shapes(root / "val", num_images=4, seed=2, image_size=(96, 96))
    return root


def test_detector(shapes: Path, tmp_path: Path) -> None:
    # Six outputs: background + the five shape classes, whose dataset ids are 1..5.
    meta = dataclasses.replace(detector_meta(num_classes=6, input_size=(96, 96)), category_ids=list(range(6)))
    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(num_classes=6), meta)
    lines: list[str] = []
    results = run(weights=ckpt, data=shapes / "val", calibration=shapes / "train", repeats=2, log=lines.append)
    assert results["task"] == "detection" and results["images"] == 4
    assert set(results["scores"]["int8"]) == {"map", "map_50"}
    assert all(v > 0 for v in results["forward_ms"].values())
    assert any("drop (points)" in line for line in lines)
    with pytest.raises(UserError, match="shares images"):
        run(weights=ckpt, data=shapes / "val", calibration=shapes / "val", repeats=1, log=lines.append)


def test_segmenter(shapes: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "seg.ckpt", small_segmenter(num_classes=6), segmenter_meta(num_classes=6, input_size=(96, 96))
    )
    results = run(
        weights=ckpt,
        data=shapes / "val",
        calibration=shapes / "train",
        repeats=1,
        keep_float=["stem"],
        log=lambda _: None,
    )
    assert set(results["scores"]["fp32"]) == {"miou", "pixel_accuracy"}
    assert len(results["kept_float"]) == 1  # the stem, reported
    assert 0.9 <= results["agreement"]["pixels_same_class"] <= 1.0


def test_joint_model_reports_both_metrics(shapes: Path, tmp_path: Path) -> None:
    meta = dataclasses.replace(
        multitask_meta(num_classes=6, seg_num_classes=6, input_size=(96, 96)), category_ids=list(range(6))
    )
    ckpt = save_checkpoint(tmp_path / "joint.ckpt", small_multitask(num_classes=6, seg_num_classes=6), meta)
    results = run(
        weights=ckpt,
        data=shapes / "val",
        calibration=shapes / "train",
        repeats=1,
        calibrate_method="percentile",
        log=lambda _: None,
    )
    assert results["task"] == "multitask" and results["calibration"] == "percentile"
    assert set(results["scores"]["int8"]) == {"map", "map_50", "miou", "pixel_accuracy"}
    assert set(results["drop_points"]) == {"map", "map_50", "miou", "pixel_accuracy"}
    assert "pixels_same_class" in results["agreement"] and "fp32_detections_above_0.3" in results["agreement"]
