"""`mobilevision benchmark throughput` runs both pipelines on batches and a video and reports rates that add up."""

from __future__ import annotations

import pytest

from mobilevision.benchmarks.throughput import run


@pytest.mark.slow
def test_throughput_reports_batches_and_video() -> None:
    lines: list[str] = []
    results = run(batches=(1, 2), threads=(1,), repeats=1, frames=4, rounds=1, log=lines.append)
    assert [(r["threads"], r["batch"]) for r in results["batches"]] == [(1, 1), (1, 2)]
    for row in results["batches"]:
        assert row["images_per_s"]["ours onnxruntime"] > 0 and row["images_per_s"]["torchvision SSD"] > 0
        assert row["ratio"] == pytest.approx(
            row["images_per_s"]["ours onnxruntime"] / row["images_per_s"]["torchvision SSD"]
        )
    (video,) = results["video"]
    assert video["frames"] == 4 and video["frames_per_s"]["ours onnxruntime"] > 0
    assert len(lines) == 3
