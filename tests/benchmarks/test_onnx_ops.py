"""`mobilevision benchmark onnx-ops`: onnxruntime's profile of an exported model, by operator and convolution kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilevision.benchmarks.onnx_ops import profile
from mobilevision.checkpoint import save_checkpoint
from mobilevision.cli import main
from tests.inference.models_for_tests import detector_meta, segmenter_meta, small_detector, small_segmenter


@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx_ops")
    ckpt = save_checkpoint(folder / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    assert main(["export", "--weights", str(ckpt)]) == 0
    return folder / "det.onnx"


def test_profile_splits_the_kernel_time_by_operator_and_convolution_kind(detector_onnx: Path) -> None:
    result = profile(detector_onnx, repeats=5)
    assert result["input"] == [1, 3, 96, 96] and result["runs"] == 5  # the warm-up runs left out
    ops = {row["op"]: row for row in result["ops"]}
    assert any("Conv" in op for op in ops), ops
    assert sum(row["share"] for row in result["ops"]) == pytest.approx(1.0)
    conv_ms = sum(row["ms"] for op, row in ops.items() if "Conv" in op)
    # Every convolution is classified from the optimised graph: the kinds add up to the convolutions' time.
    assert set(result["convolutions"]) <= {"depthwise", "1x1", "other"}
    assert {"depthwise", "1x1"} <= set(result["convolutions"])  # an SSDLite has both
    assert sum(result["convolutions"].values()) == pytest.approx(conv_ms, rel=1e-6)
    assert 0 < result["kernel_ms"] <= result["run_ms"] * 1.5


def test_cli_prints_a_table_per_model_and_refuses_a_missing_file(
    detector_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["benchmark", "onnx-ops", str(detector_onnx), "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "det.onnx input [1, 3, 96, 96]" in out and "convolutions: " in out and "%" in out
    assert main(["benchmark", "onnx-ops", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx: file not found" in capsys.readouterr().err


def test_a_graph_of_dynamic_size_runs_at_its_exported_size_or_the_given_one(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta(input_size=(64, 96)))
    assert main(["export", "--weights", str(ckpt)]) == 0
    assert profile(tmp_path / "seg.onnx", repeats=2)["input"] == [1, 3, 64, 96]
    assert profile(tmp_path / "seg.onnx", repeats=2, size=(32, 48))["input"] == [1, 3, 32, 48]
