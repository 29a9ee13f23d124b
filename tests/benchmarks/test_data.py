"""The data-loading benchmark runs both pipelines on generated JPEGs and reports both rates and their ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilevision.benchmarks.data import run
from mobilevision.cli import main as cli_main


def test_benchmark_reports_both_pipelines(tmp_path: Path) -> None:
    result = run(num_images=3, rounds=1, size=64, workdir=tmp_path)
    assert result["images"] == 3 and result["size"] == 64
    assert result["ours_images_per_s"] > 0 and result["torchvision_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_images_per_s"] / result["torchvision_images_per_s"])
    assert list(tmp_path.iterdir()) == []  # the generated images are cleaned up


def test_benchmark_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["benchmark", "data", "--num-images", "2", "--rounds", "1", "--size", "48"]) == 0
    out = capsys.readouterr().out
    assert "torchvision.transforms.v2" in out and "ratio" in out
