"""Checkpoints written by an earlier version still load: `Predictor`, `validate --ckpt_path` and `export`.

The fixtures (`tests/fixtures/checkpoints/`, how they were made is in its README) come from the code before the
task-table refactor; every later change to the checkpoint format must keep reading them.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pytest

from mobilevision.checkpoint import load_checkpoint
from mobilevision.inference.predictor import Predictor
from mobilevision.training import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
REPO = Path(__file__).resolve().parents[1]
OLD_JOINT = [
    "--model.init_args.taps=[layer_18]",
    "--model.init_args.extra_depths=[32,32]",
    "--model.init_args.default_boxes.num_maps=3",
]
OLD_DETECTOR = [
    "--model.init_args.taps=[layer_15/expansion,layer_18]",
    "--model.init_args.extra_depths=[32,32]",
    "--model.init_args.default_boxes.num_maps=4",
]


def _unpack(name: str, folder: Path) -> Path:
    path = folder / name.removesuffix(".xz")
    path.write_bytes(lzma.decompress((FIXTURES / name).read_bytes()))
    return path


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("detection_2026-11-29.ckpt.xz", "detection"),
        ("segmentation_2026-11-29.ckpt.xz", "segmentation"),
        ("multitask_2026-12-02.ckpt.xz", "multitask"),
    ],
)
def test_old_checkpoint_predicts_and_exports(name: str, task: str, tmp_path: Path) -> None:
    path = _unpack(name, tmp_path)
    model, meta = load_checkpoint(path)
    assert meta.task == task and meta.class_names[1:] == ["circle", "square", "triangle", "star", "hexagon"]
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    result = Predictor(path, score_threshold=0.0)(image)
    if task in ("detection", "multitask"):
        assert len(result["boxes"]) > 0 and (result["labels"] >= 1).all()
    if task in ("segmentation", "multitask"):
        assert result["mask"].shape == (60, 90)
    from mobilevision.cli import main

    assert main(["export", "--weights", str(path), "--output", str(tmp_path / "model.onnx")]) == 0
    onnx_result = Predictor(tmp_path / "model.onnx", score_threshold=0.0)(image)
    assert onnx_result.keys() == result.keys()


@pytest.mark.parametrize(
    ("name", "config", "extra"),
    [
        ("detection_2026-11-29.ckpt.xz", "configs/detection/ssdlite_mobilenetv2_shapes.yaml", OLD_DETECTOR),
        ("segmentation_2026-11-29.ckpt.xz", "configs/segmentation/deeplabv3_mobilenetv2_shapes.yaml", []),
        ("multitask_2026-12-02.ckpt.xz", "configs/multitask/ssdlite_deeplabv3_shapes.yaml", OLD_JOINT),
    ],
)
def test_old_checkpoint_validates(name: str, config: str, extra: list[str], tmp_path: Path) -> None:
    path = _unpack(name, tmp_path)
    run_cli(
        [
            "validate",
            "-c",
            str(REPO / config),
            f"--data.init_args.root={tmp_path / 'shapes'}",
            "--data.init_args.num_train=4",
            "--data.init_args.num_val=4",
            "--data.init_args.image_size=[64,64]",
            "--data.init_args.input_size=64",
            "--data.init_args.num_workers=0",
            "--model.init_args.width_mult=0.35",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            f"--ckpt_path={path}",
            *extra,
        ]
    )
    assert (tmp_path / "validate_metrics.json").is_file()
