"""`mobilevision benchmark multitask` on tiny models: both pipelines timed and printed, detection counts equal
across the backends, the JSON written only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilevision.benchmarks.multitask import PRESETS, build_models
from mobilevision.checkpoint import save_checkpoint
from mobilevision.cli import main
from tests.inference.models_for_tests import (
    detector_meta,
    multitask_meta,
    segmenter_meta,
    small_detector,
    small_multitask,
    small_segmenter,
)

TINY = [
    "--width",
    "0.35",
    "--num-classes",
    "4",
    "--mask-classes",
    "3",
    "--input-size",
    "96",
    "--repeats",
    "2",
    "--calibration-images",
    "2",
]


def test_tiny_run_prints_both_pipelines_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "multitask", *TINY, "--out", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    for name in (
        "joint torch",
        "pair torch (detector + segmenter)",
        "joint onnxruntime",
        "pair onnxruntime (detector + segmenter)",
        "ratio joint / pair (torch)",
        "ratio joint / pair (onnxruntime)",
        "detection counts agree across backends",
    ):
        assert name in out
    results = json.loads((tmp_path / "out.json").read_text())
    run = results["runs"][0]
    counts = run["detections"]
    assert counts["joint torch"] == counts["joint onnxruntime"] > 0
    assert counts["pair torch"] == counts["pair onnxruntime"] > 0
    for backend in ("torch", "onnxruntime"):
        assert 0 < run["ratio_joint_over_pair"][backend]["forward"] < 10
        # The segmenter is the joint model's segmentation branch: the same masks.
        assert run["mask_agreement_joint_vs_pair"][backend] > 0.99
        pair = run["stages_ms"][f"pair {backend}"]
        assert pair["detector"] > 0 and pair["segmenter"] > 0
    assert results["input_size"] == [96, 96] and results["mask_classes"] == 3


def test_nothing_written_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", "multitask", *TINY[:-4], "--repeats", "1", "--calibration-images", "2"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_shapes_preset_builds_the_demo_models() -> None:
    preset = PRESETS["shapes"]
    (joint, detector, segmenter), metas = build_models(preset, calibration_images=2)
    assert joint.taps == ("layer_8/expansion", "layer_18") and joint.default_boxes.num_maps == 6
    assert detector.taps == ("layer_8/expansion", "layer_15/expansion", "layer_19")
    assert joint.backbone.width_mult == detector.backbone.width_mult == segmenter.backbone.width_mult == 0.5
    assert joint.num_classes == detector.num_classes == 6 and segmenter.num_classes == joint.seg_num_classes == 6
    assert all(meta.input_size == (224, 224) for meta in metas)
    assert [meta.task for meta in metas] == ["multitask", "detection", "segmentation"]


@pytest.mark.parametrize(
    ("config", "models"), [("ssdlite_deeplabv3_shapes", "joint"), ("ssdlite_mobilenetv2_shapes", "detector")]
)
def test_shapes_preset_is_the_shipped_configs(config: str, models: str) -> None:
    """The preset times the demo's models: the same architecture settings as the shipped configs."""
    import yaml

    from mobilevision.configs import resolve_config

    args = yaml.safe_load(resolve_config(config).read_text())["model"]["init_args"]
    preset = PRESETS["shapes"]
    settings = getattr(preset, models)
    assert args["width_mult"] == preset.width and args["taps"] == settings["taps"]
    assert args["extra_depths"] == settings["extra_depths"]
    assert args["default_boxes"] == settings["default_boxes"]


def test_trained_checkpoints_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    joint = save_checkpoint(tmp_path / "joint.ckpt", small_multitask(), multitask_meta(input_size=(96, 96)))
    det = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(160, 160)))
    seg = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta())
    assert main(["benchmark", "multitask", "--weights", str(joint), str(det), str(seg), "--repeats", "1"]) == 0
    assert "96x96 RGB uint8 image" in capsys.readouterr().out  # every model at the joint model's input size
    assert main(["benchmark", "multitask", "--weights", str(det), str(joint), str(seg), "--repeats", "1"]) == 2
    assert "a detection checkpoint where the multitask model goes" in capsys.readouterr().err
