"""`mobilevision.train`: the same LightningCLI run as `mobilevision fit`, from Python, returning what it made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mobilevision
from mobilevision.api import override_args
from mobilevision.errors import UserError


def test_overrides_become_cli_arguments() -> None:
    assert override_args(
        {
            "model__width_mult": 0.5,
            "data__image_size": [64, 64],
            "trainer__logger": False,
            "trainer__precision": "bf16-mixed",
            "model__init_args__lr": None,
        }
    ) == [
        "--model.init_args.width_mult=0.5",
        "--data.init_args.image_size=[64, 64]",
        "--trainer.logger=false",
        "--trainer.precision=bf16-mixed",
        "--model.init_args.lr=null",
    ]


def test_train_returns_checkpoint_metrics_and_pictures(tmp_path: Path) -> None:
    result = mobilevision.train(
        "ssdlite_mobilenetv2_shapes",
        data_root=tmp_path / "shapes",
        max_epochs=1,
        output_dir=tmp_path / "run",
        model__width_mult=0.35,
        data__num_train=8,
        data__num_val=4,
        data__image_size=[64, 64],
        data__input_size=64,
        data__batch_size=4,
        trainer__enable_progress_bar=False,
        trainer__enable_model_summary=False,
    )
    assert result.run_dir == tmp_path / "run"
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["mobilevision"]["input_size"] in ([64, 64], (64, 64))
    assert "val/map" in result.metrics and 0.0 <= result.metrics["val/map"] <= 1.0
    assert {p.name for p in result.plots} >= {"val_pr_curves.png"}
    assert list((tmp_path / "run").rglob("config.yaml"))  # the run is the CLI's run: the resolved config is saved


def test_train_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean ssdlite_mobilenetv2_shapes"):
        mobilevision.train("ssdlite_mobilenetv2_shape", data_root=tmp_path)
    with pytest.raises(UserError, match="width_mult"):
        mobilevision.train(
            "ssdlite_mobilenetv2_shapes",
            data_root=tmp_path / "shapes",
            model__width_mult=3.0,
            output_dir=tmp_path / "run",
        )
    with pytest.raises(UserError, match="refused the arguments"):
        mobilevision.train("ssdlite_mobilenetv2_shapes", output_dir=tmp_path / "run", trainer__no_such_option=1)
