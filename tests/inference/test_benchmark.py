from __future__ import annotations

import torch

from mobilevision.inference.benchmark import _TorchvisionPipeline, build_pair, run
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
    result, stages = _TorchvisionPipeline(ssd).timed(random_image(120, 160))
    assert set(stages) == {"preprocess", "forward", "postprocess"} and result["boxes"].shape[1] == 4


def test_benchmark_runs_end_to_end() -> None:
    lines: list[str] = []
    results = run(repeats=1, threads=[1], stream_frames=60, width_mult=0.35, log=lines.append)
    row = results["threads"]["1"]
    assert row["ratio_best_vs_torchvision"] > 0 and "torchvision SSD (eager)" in row["stages_ms"]
    assert results["stream"]["frames"] == 60 and results["stream"]["growth_mb"] < 100
    assert any("ratio" in line for line in lines)
