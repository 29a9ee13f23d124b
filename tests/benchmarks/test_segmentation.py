from __future__ import annotations

import torch

from mobilevision.benchmarks.segmentation import build_pair, run
from mobilevision.models import build_model


def test_torchvision_head_holds_our_weights_where_shapes_allow() -> None:
    torch.manual_seed(0)
    ours = build_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35).eval()
    theirs = build_pair(ours)
    x = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        features = ours.backbone(ours.normalize(x))[ours.tap]
        head = ours.head
        ours_aspp = head.project(torch.cat([b(features) for b in head.branches], 1))
        theirs_aspp = theirs.classifier[0](theirs.backbone(ours.normalize(x))["out"])
        out = theirs(ours.normalize(x))["out"]
    assert torch.allclose(ours_aspp, theirs_aspp, atol=1e-5)
    assert torch.equal(theirs.classifier[4].weight, head.classifier.weight)
    assert out.shape == (1, 5, 64, 96)  # upsampled to the input, like ours


def test_segmentation_benchmark_runs() -> None:
    lines: list[str] = []
    results = run(
        repeats=1, threads=[1], size=(96, 128), calibration_images=4, width_mult=0.35, int8=True, log=lines.append
    )
    table = results["runs"][0]["stages_ms"]
    assert set(table) == {
        "torchvision DeepLabV3 head (eager)",
        "ours torch",
        "ours onnxruntime",
        "ours onnxruntime int8",
    }
    assert all(row["end_to_end"] > 0 for row in table.values())
    assert any("ratio" in line for line in lines)
