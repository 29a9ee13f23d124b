"""The run's pictures: curves from the CSVs a run writes, PR curves from pycocotools' precision, the confusion
matrix; the callback writes them at the end of fit and validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.plots import plot_confusion_matrix, plot_pr_curves, plot_training_curves, read_csv_columns


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_training_curves_from_metrics_and_curve_csv(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,step,train/loss,val/loss,val/map\n0,9,2.5,,\n0,19,2.0,,\n0,19,,2.2,0.1\n1,29,1.5,,\n")
    curve = tmp_path / "curve.csv"
    curve.write_text("minutes,step,epoch,val/map,val/map_large\n0.1,19,0,0.1,-1.0\n0.2,39,1,0.3,-1.0\n")
    columns = read_csv_columns(metrics)
    assert columns["train/loss"][:2] == [2.5, 2.0] and np.isnan(columns["train/loss"][2])
    path = plot_training_curves(tmp_path / "curves.png", metrics_csv=metrics, curve_csv=curve, title="run")
    assert path is not None and min(_png_size(path)) > 200
    assert plot_training_curves(tmp_path / "none.png", metrics_csv=tmp_path / "missing.csv") is None
    assert not (tmp_path / "none.png").exists()


def test_pr_curves_leave_out_classes_without_ground_truth(tmp_path: Path) -> None:
    recall = np.linspace(0, 1, 101)
    precision = np.stack([1 - recall, np.full(101, 0.5), np.full(101, -1.0)], axis=1)
    path = plot_pr_curves(tmp_path / "pr.png", precision, recall, ["a", "b", "no ground truth"], ap=[0.5, 0.5, None])
    assert path is not None and _png_size(path)[0] > 200
    assert plot_pr_curves(tmp_path / "x.png", np.full((101, 2), -1.0), recall, ["a", "b"]) is None


def test_confusion_matrix_handles_empty_rows(tmp_path: Path) -> None:
    matrix = np.array([[50, 2, 0], [3, 40, 1], [0, 0, 0]])  # the last class never occurs
    path = plot_confusion_matrix(tmp_path / "cm.png", matrix, ["background", "circle", "square"])
    assert _png_size(path)[0] > 200


@pytest.mark.parametrize("config", ["ssdlite_mobilenetv2_shapes", "deeplabv3_mobilenetv2_shapes"])
def test_fit_then_validate_writes_the_pictures(tmp_path: Path, config: str) -> None:
    from mobilevision.training import run_cli

    tiny = [
        f"--data.init_args.root={tmp_path / 'shapes'}",
        "--data.init_args.num_train=8",
        "--data.init_args.num_val=4",
        "--data.init_args.image_size=[64,64]",
        "--data.init_args.input_size=64",
        "--data.init_args.batch_size=4",
        "--model.init_args.width_mult=0.35",
        "--trainer.max_time=null",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    run_cli(["fit", "-c", str(_config(config)), *tiny, "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1"])
    plots = tmp_path / "plots"
    expected = {"training_curves.png"} | (
        {"val_pr_curves.png", "val_pr_curves_iou50.png"} if "ssdlite" in config else {"val_confusion_matrix.png"}
    )
    assert {p.name for p in plots.iterdir()} == expected
    for path in plots.iterdir():
        path.unlink()
    run_cli(["validate", "-c", str(_config(config)), *tiny, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    assert {p.name for p in plots.iterdir()} == expected - {"training_curves.png"}


def _config(name: str) -> Path:
    from mobilevision.configs import resolve_config

    return resolve_config(name)
