"""Configurations of before the criterion was injected (loss options as the task's own arguments) still run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mobilevision.configs import resolve_config
from mobilevision.tasks.legacy import CRITERION, upgrade_argv
from mobilevision.training import run_cli

OLD_LOSS = {"focal_gamma": 2.0, "assignment": "atss", "box_loss": "giou", "box_weight": 2.0}


def _old_config(tmp_path: Path) -> Path:
    """The shapes detection config as it was written before: the loss options beside the model's."""
    config = yaml.safe_load(resolve_config("ssdlite_mobilenetv2_shapes").read_text())
    init_args = config["model"]["init_args"]
    assert init_args.pop("criterion")["init_args"] == OLD_LOSS  # the shipped config is in the new layout
    init_args.update(OLD_LOSS)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_old_options_on_the_command_line_move_under_the_criterion() -> None:
    with pytest.warns(FutureWarning, match="focal_gamma, neg_pos_ratio"):
        argv = upgrade_argv(["fit", "--model.init_args.focal_gamma=2.0", "--model.init_args.neg_pos_ratio", "2"])
    assert argv == [
        "fit",
        f"--model.init_args.criterion={CRITERION}",
        "--model.init_args.criterion.init_args.focal_gamma=2.0",
        "--model.init_args.criterion.init_args.neg_pos_ratio",
        "2",
    ]
    unchanged = ["fit", "--model.init_args.width_mult=0.5", "--model.init_args.criterion.init_args.box_weight=2"]
    assert upgrade_argv(unchanged) == unchanged


def test_an_old_config_builds_the_same_criterion_as_the_shipped_one(tmp_path: Path) -> None:
    common = ["--model.init_args.width_mult=0.35", "--trainer.logger=false", f"--data.init_args.root={tmp_path}"]
    with pytest.warns(FutureWarning, match="assignment, box_loss, box_weight, focal_gamma"):
        old = run_cli(["-c", str(_old_config(tmp_path)), *common], run=False)
    new = run_cli(["-c", str(resolve_config("ssdlite_mobilenetv2_shapes")), *common], run=False)
    assert old.model.criterion.options() == new.model.criterion.options()
    assert old.model.criterion.options() | OLD_LOSS == old.model.criterion.options()
    assert old.model.criterion.classification == "sigmoid"  # bound to the detector's scoring
