from __future__ import annotations

import numpy as np
import torch

from mobilevision.benchmarks.predictor import (
    TorchvisionPipeline,
    build_pair,
    busy_image,
    calibrate_batchnorm,
    photo_like_images,
    run,
)
from mobilevision.inference.predictor import Predictor
from tests.inference.models_for_tests import random_image


def test_torchvision_twin_is_the_same_network() -> None:
    ours, ssd = build_pair(num_classes=5, width_mult=0.35)
    x = torch.rand(2, 3, 320, 320) * 255
    with torch.no_grad():
        raw, anchors = ours.forward_raw(x)
        theirs = ssd.head(list(ssd.backbone(ours.normalize(x)).values()))
    assert torch.allclose(raw["cls_logits"], theirs["cls_logits"], atol=1e-5)
    assert torch.allclose(raw["bbox_regression"], theirs["bbox_regression"], atol=1e-5)
    assert anchors.shape[0] == raw["cls_logits"].shape[1]
    result, stages = TorchvisionPipeline(ssd).timed(random_image(120, 160))
    assert set(stages) == {"preprocess", "forward", "postprocess"} and result["boxes"].shape[1] == 4


def test_calibrated_batchnorm_gives_detections_both_pipelines_agree_on() -> None:
    """Fresh BatchNorm statistics leave nothing above 0.3; calibrated on generated images, a busy image gives
    detections, and our Predictor and torchvision's SSD return the same ones (same weights, same pixels)."""
    from mobilevision.tasks.detection.parity import match_detections

    torch.manual_seed(0)
    ours, ssd = build_pair(num_classes=21, width_mult=0.35)
    image = busy_image((320, 320))
    assert len(Predictor(ours, optimize=False)(image)["scores"]) == 0
    calibrate_batchnorm(ours, photo_like_images(8, (320, 320)))
    assert ours.backbone.features[1].conv[0][1].running_var.min() != 1.0  # the statistics moved
    ours, ssd = build_pair(ours)
    for threshold in (0.3, 0.01):
        ssd.score_thresh = threshold
        a = Predictor(ours, optimize=False, score_threshold=threshold)(image)
        b = TorchvisionPipeline(ssd)(image)
        a_t = {k: torch.as_tensor(np.asarray(a[k])) for k in ("boxes", "scores", "labels")}
        found, _ = match_detections(a_t, b)
        assert len(a["scores"]) > 0 and len(a["scores"]) == len(b["scores"]) == int(found.sum()), threshold


def test_twin_of_a_detector_with_its_own_default_boxes() -> None:
    """A checkpoint's default boxes (the TF recipe's three boxes on the finest map) are not DefaultBoxGenerator's:
    the twin takes ours, and the detections still agree."""
    from mobilevision.models import build_model

    torch.manual_seed(1)
    model = build_model("ssdlite_mobilenet_v2", num_classes=6, width_mult=0.35)
    calibrate_batchnorm(model, photo_like_images(8, (320, 320), seed=3))
    ours, ssd = build_pair(model, score_threshold=0.01)
    image = busy_image((320, 320))
    a = Predictor(ours, optimize=False, score_threshold=0.01)(image)
    b = TorchvisionPipeline(ssd)(image)
    assert len(a["scores"]) > 0 and len(a["scores"]) == len(b["scores"])
    assert np.allclose(np.sort(a["scores"]), np.sort(b["scores"].numpy()), atol=1e-4)


def test_benchmark_runs_both_regimes_end_to_end() -> None:
    lines: list[str] = []
    results = run(
        repeats=1, threads=[1], stream_frames=60, width_mult=0.35, calibration_images=8, int8=True, log=lines.append
    )
    assert [r["regime"] for r in results["runs"]] == ["busy, 0.3", "COCO eval, 0.01"]
    for row in results["runs"]:
        fp32 = {k: v for k, v in row["detections"].items() if "int8" not in k}
        counts = set(fp32.values())
        assert row["counts_agree"] and len(counts) == 1 and counts.pop() > 0, row
        assert {row["matched_to_torchvision"][k] for k in fp32} == set(fp32.values()), row
        assert {"preprocess", "forward", "postprocess", "end_to_end"} <= set(row["stages_ms"]["ours onnxruntime"])
        assert row["detections"]["ours onnxruntime int8"] > 0  # printed, not required to agree
    assert results["stream"]["frames"] == 60 and results["stream"]["growth_mb"] < 100
    assert any("detection counts agree" in line for line in lines)
