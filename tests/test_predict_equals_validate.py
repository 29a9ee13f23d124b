"""`predict` + `evaluate` scores what `validate` scores: same checkpoint, same images (non-square, of the real
sizes), the dataset's own ids, the validation's score threshold; for segmentation also at output stride 8 with MF.

The checkpoints (narrow models, widths 0.35-0.5) are trained for 120-420 steps on the miniature data so that
predictions vary from image to image and pixel to pixel: equality of two constant predictors would prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mobilevision.cli import main as cli_main
from mobilevision.tasks.segmentation.masks import read_index_mask
from mobilevision.training import run_cli
from tests.test_config_chain import CPU

REPO = Path(__file__).resolve().parents[1]
COCO_CONFIG = REPO / "configs/detection/ssdlite_mobilenetv2_coco.yaml"
VOC_SEG_CONFIG = REPO / "configs/segmentation/deeplabv3_mobilenetv2_voc.yaml"
MT_CONFIG = REPO / "configs/multitask/ssdlite_deeplabv3_shapes.yaml"
# From-scratch settings that learn in a few hundred steps (the shapes demo's), instead of the GPU recipes' schedules.
FAST = [
    "--model.init_args.optimizer.init_args.lr=0.05",
    "--model.init_args.schedule.warmup_steps=20",
    "--model.init_args.schedule.warmup_factor=0.1",
    "--data.init_args.batch_size=4",
]


def _metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "validate_metrics.json").read_text())


def _evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """`mobilevision evaluate ARGS --json`, its printed numbers."""
    capsys.readouterr()
    assert cli_main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _assert_box_scores_equal(evaluated: dict[str, float], validated: dict[str, float]) -> None:
    """The 12 COCO numbers of `evaluate detection` equal validate's `val/...` ones."""
    for key, value in evaluated.items():
        assert abs(value - validated[f"val/{key}"]) < 1e-4, (key, value, validated[f"val/{key}"])


@pytest.mark.slow
def test_detection_predict_then_evaluate_equals_validate(
    tmp_path: Path, coco2017: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    coco, _ = coco2017
    gt = coco / "annotations" / "instances_val2017.json"
    run = tmp_path / "run"
    # Trained on the validation images themselves: the point is a detector whose boxes are right often enough that
    # the mAP moves with every box, not one that generalises.
    common = [
        "-c",
        str(COCO_CONFIG),
        *CPU,
        *FAST,
        f"--data.init_args.root={coco}",
        "--data.init_args.input_size=128",
        f"--data.init_args.train_images={coco / 'val2017'}",
        f"--data.init_args.train_annotations={gt}",
        "--model.init_args.criterion.init_args.assignment=atss",
        "--model.init_args.criterion.init_args.focal_gamma=2.0",
        "--model.init_args.classification=sigmoid",
        "--model.init_args.ema_decay=null",
        "--model.init_args.width_mult=0.35",
        f"--trainer.default_root_dir={run}",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=120"])
    last = run / "checkpoints" / "last.ckpt"
    run_cli(["validate", *common, f"--ckpt_path={last}"])
    validated = _metrics(run)
    assert validated["val/map_50"] > 0.1, validated  # a detector that finds things

    out = tmp_path / "predicted"
    assert (
        cli_main(
            [
                "predict",
                "--weights",
                str(last),
                "--source",
                str(coco / "val2017"),
                "--annotations",
                str(gt),
                "--output",
                str(out),
                "--score-threshold",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    predictions = json.loads((out / "predictions.json").read_text())
    assert len({round(p["score"], 3) for p in predictions}) > 10  # not a constant predictor
    evaluated = _evaluate(capsys, "detection", "--gt", str(gt), "--predictions", str(out / "predictions.json"))
    with capsys.disabled():
        print(
            f"detection: validate mAP {validated['val/map']:.4f} / AP50 {validated['val/map_50']:.4f}, "
            f"predict + evaluate {evaluated['map']:.4f} / {evaluated['map_50']:.4f}"
        )
    _assert_box_scores_equal(evaluated, validated)


@pytest.mark.slow
def test_segmentation_predict_then_evaluate_equals_validate(
    tmp_path: Path, vocdevkit: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    voc, _ = vocdevkit
    run = tmp_path / "run"
    val_list = voc / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    # Trained on the validation images (as the detector above), AdamW as in the shapes demo, crops that see whole
    # objects.
    common = [
        "-c",
        str(VOC_SEG_CONFIG),
        *CPU,
        *FAST,
        f"--data.init_args.root={voc}",
        "--model.init_args.optimizer=torch.optim.AdamW",
        "--model.init_args.optimizer.init_args.lr=0.01",
        "--data.init_args.input_size=128",
        "--data.init_args.scale=[0.3,0.6]",
        "--data.init_args.eval_batch_size=3",
        "--data.init_args.train_split=val",
        "--data.init_args.batch_size=3",
        "--model.init_args.background_prior=0.7",
        "--model.init_args.width_mult=0.35",
        f"--trainer.default_root_dir={run}",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=150"])
    last = run / "checkpoints" / "last.ckpt"

    for strategy, predict_args in (
        ([], []),
        (
            ["--model.init_args.eval_output_stride=8", "--model.init_args.multi_scale_flip=true"],
            ["--output-stride", "8", "--mf"],
        ),
    ):
        run_cli(["validate", *common, *strategy, f"--ckpt_path={last}"])
        validated = _metrics(run)
        out = tmp_path / f"predicted{len(strategy)}"
        assert (
            cli_main(
                [
                    "predict",
                    "--weights",
                    str(last),
                    "--source",
                    str(voc / "VOC2012" / "JPEGImages"),
                    "--split-list",
                    str(val_list),
                    "--output",
                    str(out),
                    "--no-progress",
                    *predict_args,
                ]
            )
            == 0
        )
        paths = sorted((out / "masks").glob("*.png"))
        masks = [read_index_mask(p) for p in paths]
        gt_shapes = [read_index_mask(voc / "VOC2012" / "SegmentationClass" / p.name).shape for p in paths]
        assert len(masks) == 3 and [m.shape for m in masks] == gt_shapes  # whole images, at their own size
        assert any(h != w for h, w in gt_shapes)
        assert len(np.unique(np.concatenate([m.ravel() for m in masks]))) > 2  # not a constant predictor
        evaluated = _evaluate(
            capsys,
            "segmentation",
            "--gt",
            str(voc / "VOC2012" / "SegmentationClass"),
            "--predictions",
            str(out / "masks"),
            "--split-list",
            str(val_list),
        )
        with capsys.disabled():
            print(
                f"segmentation {predict_args or 'OS16 single scale'}: validate mIoU {validated['val/miou']:.4f}, "
                f"predict + evaluate {evaluated['miou']:.4f}"
            )
        assert validated["val/miou"] > 0.1, validated
        assert abs(evaluated["miou"] - validated["val/miou"]) < 1e-6, (strategy, evaluated, validated)
        assert abs(evaluated["pixel_accuracy"] - validated["val/pixel_accuracy"]) < 1e-6


@pytest.mark.slow
def test_multitask_predict_then_evaluate_equals_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The joint model: predict's boxes scored by `evaluate detection` and its PNG masks by `evaluate segmentation`
    give validate's mAP and mIoU (non-square images, fed at a square input and scored at their own size)."""
    shapes, run = tmp_path / "shapes", tmp_path / "run"
    common = [
        "-c",
        str(MT_CONFIG),
        *CPU,
        f"--data.init_args.root={shapes}",
        "--data.init_args.num_train=64",
        "--data.init_args.num_val=12",
        "--data.init_args.image_size=[128,160]",
        "--data.init_args.input_size=128",
        "--data.init_args.batch_size=4",
        "--model.init_args.ema_decay=null",
        "--model.init_args.seg_weight=1.0",
        "--model.init_args.width_mult=0.5",
        "--model.init_args.background_prior=0.5",
        f"--trainer.default_root_dir={run}",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=420", "--model.init_args.optimizer.init_args.lr=0.03"])
    last = run / "checkpoints" / "last.ckpt"
    run_cli(["validate", *common, f"--ckpt_path={last}"])
    validated = _metrics(run)
    # Both heads learned something (all background would be mIoU 0.85 / 6 = 0.14; a weak background prior and a
    # high lr get this short run past it), and the predictions below vary from box to box and image to image, so
    # equal scores are not two constants agreeing.
    assert validated["val/map_50"] > 0.02 and validated["val/miou"] > 0.16, validated

    val = shapes / "val"
    out = tmp_path / "predicted"
    assert (
        cli_main(
            [
                "predict",
                "--weights",
                str(last),
                "--source",
                str(val / "images"),
                "--annotations",
                str(val / "annotations.json"),
                "--output",
                str(out),
                "--score-threshold",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    assert len({round(p["score"], 3) for p in json.loads((out / "predictions.json").read_text())}) > 10
    masks = [read_index_mask(p) for p in sorted((out / "masks").glob("*.png"))]
    assert len(masks) == 12 and all(m.shape == (128, 160) for m in masks)
    foreground = [int((m > 0).sum()) for m in masks]  # not a constant predictor: shapes found, more in some images
    assert max(foreground) > 0 and len(set(foreground)) > 6, foreground
    boxes = _evaluate(
        capsys, "detection", "--gt", str(val / "annotations.json"), "--predictions", str(out / "predictions.json")
    )
    pixels = _evaluate(capsys, "segmentation", "--gt", str(val / "masks"), "--predictions", str(out / "masks"))
    with capsys.disabled():
        print(
            f"multitask: validate mAP {validated['val/map']:.4f} / mIoU {validated['val/miou']:.4f}, "
            f"predict + evaluate {boxes['map']:.4f} / {pixels['miou']:.4f}"
        )
    _assert_box_scores_equal(boxes, validated)
    assert abs(pixels["miou"] - validated["val/miou"]) < 1e-6, (pixels, validated)
    assert abs(pixels["pixel_accuracy"] - validated["val/pixel_accuracy"]) < 1e-6
