"""ExecuTorch (`.pte`) and LiteRT (`.tflite`) exports against PyTorch (`mobilevision.export.executorch`, `.tflite`).

Skipped when the runtime is not installed (`pip install executorch`, `pip install litert-torch`:
docs/mobile-runtimes.md says which versions install beside torch 2.14.1).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from mobilevision.export.onnx import compare_outputs, parity_images
from mobilevision.tasks.table import task_of_model
from tests.inference.models_for_tests import small_detector, small_segmenter

# XNNPACK's fp32 kernels accumulate in another order than torch's: 1.9e-4 of the outputs' scale measured on the
# width-0.5 detector at 320 (docs/mobile-runtimes.md), above the 1e-4 the ONNX export holds to.
FP32_TOLERANCE = 1e-3


def _export_and_run(fmt: str, model: torch.nn.Module, size: tuple[int, int], **kwargs) -> Callable:
    if fmt == "pte":
        pytest.importorskip("executorch.runtime")
        from mobilevision.export.executorch import PteRunner, export_pte

        return PteRunner(export_pte(model, size, **kwargs), num_threads=1)
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert.interpreter")
    from mobilevision.export.tflite import TfliteRunner, export_tflite

    return TfliteRunner(export_tflite(model, size, **kwargs), num_threads=1)


def _report(model: torch.nn.Module, runner: Callable, images: torch.Tensor, size: tuple[int, int]):
    from mobilevision.export.executorch import export_surface
    from mobilevision.export.runtime_bench import run_each

    with torch.no_grad():
        reference = run_each(lambda x: list(export_surface(model)(x)), images)
    other = run_each(runner, images)
    return compare_outputs(task_of_model(model), reference, other, source=model, input_size=size, thresholds=(0.3,))


@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_detector_fp32_parity(fmt: str) -> None:
    size = (160, 160)
    model = small_detector()
    report = _report(model, _export_and_run(fmt, model, size), parity_images(size, 2, seed=0), size)
    assert report.max_relative_diff <= FP32_TOLERANCE, report.format()
    assert report.detections_identical, report.format()


@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_segmenter_fp32_parity(fmt: str) -> None:
    size = (128, 128)
    model = small_segmenter()
    images = parity_images(size, 2, seed=0)
    report = _report(model, _export_and_run(fmt, model, size), images, size)
    assert report.max_relative_diff <= FP32_TOLERANCE, report.format()


@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_segmenter_int8_masks(fmt: str) -> None:
    """int8 (per-channel weights, calibrated): most mask pixels keep fp32's class."""
    size = (128, 128)
    model = small_segmenter()
    calibration = list(parity_images(size, 4, seed=1).split(1))
    runner = _export_and_run(fmt, model, size, int8=True, calibration=calibration)
    image = parity_images(size, 2, seed=0)[1:]
    with torch.no_grad():
        reference = model(image).argmax(1)
    low = runner(image)[0]  # the exported surface: logits at the output stride, upsampled by the post-processing
    agreement = (F.interpolate(low.float(), size=size, mode="bilinear").argmax(1) == reference).float().mean()
    assert agreement >= 0.9


@pytest.mark.parametrize("fmt", ["executorch", "tflite"])
def test_export_cli_nms_graph_on_the_runtime(fmt: str, tmp_path, capsys) -> None:
    """`export --format FMT --nms`: NAME.nms.SUFFIX runs on the runtime and gives our post-processing's detections
    (some images capped at 100, some with fewer: a threshold of 0.7 on this detector)."""
    pytest.importorskip("executorch.runtime" if fmt == "executorch" else "ai_edge_litert.interpreter")
    from mobilevision.checkpoint import save_checkpoint
    from mobilevision.cli import main
    from mobilevision.export.mobile import MobileSession
    from mobilevision.export.nms import NMS_OUTPUTS
    from tests.inference.models_for_tests import detector_meta

    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    argv = ["export", "--weights", str(ckpt), "--format", fmt, "--nms", "--score-threshold", "0.7"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NMS graph parity OK" in out, out
    suffix = ".pte" if fmt == "executorch" else ".tflite"
    session = MobileSession(tmp_path / f"det.nms{suffix}", num_threads=1)
    boxes, scores, labels, count = session.run(None, {"images": parity_images((96, 96), 1, seed=3).numpy()})
    assert session.output_names == list(NMS_OUTPUTS)
    assert boxes.shape == (1, 100, 4) and scores.shape == labels.shape == (1, 100) and count.shape == (1,)
