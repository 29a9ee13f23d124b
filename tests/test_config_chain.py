"""Every shipped config, run as a user runs it, on data laid out like the real dataset it names:
`fit` a few steps -> `validate` -> `test` -> `predict` on the validation images -> `evaluate` what predict wrote ->
`export` to ONNX (with its parity check) and predict again from the exported file.
 One parametrized test over the shipped configs (`mobilevision.configs.config_paths()`): a new config is covered by
adding it (and, for a new DataModule, one line in `_data_overrides`). The GPU recipes run on the CPU with one process,
fp32, no SyncBatchNorm, backbone weights off and a small width and input, which changes how fast they run, not which
code they run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.checkpoint import load_checkpoint
from mobilevision.cli import main as cli_main
from mobilevision.configs import config_paths
from mobilevision.data.labels import VOC_CLASSES, with_background
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.training import run_cli
from tests.fixtures.datasets import COCO_CATEGORIES
from tests.fixtures.own_data import CLASSES as OWN_CLASSES
from tests.fixtures.own_data import make_truth, write_coco, write_voc, write_yolo

CONFIGS = config_paths()

# Each dataset's one label space: (class names, dataset category ids or None), background first.
COCO_SPACE = (["background", *(name for _, name, _ in COCO_CATEGORIES)], [0, *(cid for cid, _, _ in COCO_CATEGORIES)])
VOC_SPACE = (with_background(VOC_CLASSES), None)
SHAPES_SPACE = (with_background(SHAPE_CLASSES), None)

CPU = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.strategy=auto",
    "--trainer.sync_batchnorm=false",
    "--trainer.precision=32-true",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.max_time=null",
    "--model.init_args.backbone_weights=null",
    "--model.init_args.width_mult=0.35",
    "--data.init_args.num_workers=0",
    "--data.init_args.batch_size=2",
]


def _data_overrides(text: str, tmp: Path, coco: Path, voc: Path) -> tuple[list[str], dict]:
    """Overrides pointing a config at the miniature data, and how to predict and evaluate on its validation split."""
    if "detection.datamodule.CocoDataModule" in text:
        gt = coco / "annotations" / "instances_val2017.json"
        return (
            [f"--data.init_args.root={coco}", "--data.init_args.input_size=128"],
            {"task": "detection", "space": COCO_SPACE, "source": coco / "val2017", "annotations": gt, "gt": gt},
        )
    if "detection.datamodule.VOCDataModule" in text:
        gt = tmp / "voc07_test.json"
        assert (
            cli_main(["data", "to-coco", "--root", str(voc), "--split", "test", "--year", "2007", "--out", str(gt)])
            == 0
        )
        return (
            [f"--data.init_args.root={voc}", "--data.init_args.input_size=128"],
            {"task": "detection", "space": (VOC_SPACE[0], list(range(21))), "source": voc, "annotations": gt, "gt": gt},
        )
    if "detection.datamodule.ShapesDataModule" in text:
        shapes = tmp / "shapes"
        return (
            [
                f"--data.init_args.root={shapes}",
                "--data.init_args.num_train=8",
                "--data.init_args.num_val=4",
                "--data.init_args.image_size=[96,128]",
                "--data.init_args.input_size=96",
            ],
            {
                "task": "detection",
                "space": (SHAPES_SPACE[0], list(range(6))),
                "source": shapes / "val" / "images",
                "annotations": shapes / "val" / "annotations.json",
                "gt": shapes / "val" / "annotations.json",
            },
        )
    if "ShapesMultiTaskDataModule" in text:
        shapes = tmp / "shapes"
        gt = shapes / "val" / "annotations.json"
        return (
            [
                f"--data.init_args.root={shapes}",
                "--data.init_args.num_train=8",
                "--data.init_args.num_val=4",
                "--data.init_args.image_size=[96,128]",
                "--data.init_args.input_size=96",
            ],
            {
                "task": "multitask",
                "space": (SHAPES_SPACE[0], list(range(6))),
                "mask_space": SHAPES_SPACE[0],
                "source": shapes / "val" / "images",
                "annotations": gt,
                "gt": gt,
                "mask_gt": shapes / "val" / "masks",
            },
        )
    if "CocoVocMultiTaskDataModule" in text:
        gt = coco / "annotations" / "instances_val2017.json"
        # Boxes scored against COCO val; the masks by validate (val/miou): no VOC-class PNGs of COCO val exist.
        return (
            [f"--data.init_args.root={coco}", f"--data.init_args.voc_root={voc}", "--data.init_args.input_size=128"],
            {
                "task": "multitask",
                "space": COCO_SPACE,
                "mask_space": VOC_SPACE[0],
                "source": coco / "val2017",
                "annotations": gt,
                "gt": gt,
            },
        )
    seg_val = {
        "task": "segmentation",
        "space": VOC_SPACE,
        "source": voc / "VOC2012" / "JPEGImages",
        "split_list": voc / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt",
        "gt": voc / "VOC2012" / "SegmentationClass",
    }
    small = ["--data.init_args.input_size=96", "--data.init_args.eval_batch_size=2"]
    if "VOCSegmentationDataModule" in text:
        return [f"--data.init_args.root={voc}", *small], seg_val
    if "COCOSegmentationDataModule" in text:
        return (
            [
                f"--data.init_args.train_images={coco / 'train2017'}",
                f"--data.init_args.train_annotations={coco / 'annotations' / 'instances_train2017.json'}",
                f"--data.init_args.voc_root={voc}",
                *small,
            ],
            seg_val,
        )
    if "ShapesSegmentationDataModule" in text:
        shapes = tmp / "shapes"
        return (
            [
                f"--data.init_args.root={shapes}",
                "--data.init_args.num_train=8",
                "--data.init_args.num_val=4",
                "--data.init_args.image_size=[96,128]",
                *small,
            ],
            {
                "task": "segmentation",
                "space": SHAPES_SPACE,
                "source": shapes / "val" / "images",
                "gt": shapes / "val" / "masks",
            },
        )
    if "CustomDetectionDataModule" in text:
        # A labelling tool's COCO export (Label Studio: result.json beside images/, category ids from 0).
        root = write_coco(tmp / "own", make_truth(n=10))
        gt = root / "result.json"
        return (
            [f"--data.init_args.root={root}", "--data.init_args.input_size=96", "--data.init_args.batch_size=4"],
            {
                "task": "detection",
                "space": (["background", *OWN_CLASSES], [0, 0, 1]),
                "source": root,
                "annotations": gt,
                "gt": gt,
            },
        )
    if "CustomSegmentationDataModule" in text:
        # An images folder and a masks folder of class indices, matched by file stem.
        images, masks = tmp / "own" / "images", tmp / "own" / "masks"
        images.mkdir(parents=True)
        masks.mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
            Image.fromarray(rng.integers(0, 3, (48, 64), dtype=np.uint8)).save(masks / f"{i}.png")
        names = ["background", "a", "b"]
        return (
            [
                f"--data.init_args.images={images}",
                f"--data.init_args.masks={masks}",
                f"--data.init_args.names=[{','.join(names)}]",
                *small,
            ],
            {"task": "segmentation", "space": (names, None), "source": images, "gt": masks},
        )
    raise AssertionError("a config with a DataModule this test does not know: add it to _data_overrides")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_fit_validate_test_predict_evaluate(
    config: Path,
    tmp_path: Path,
    coco2017: tuple[Path, dict],
    vocdevkit: tuple[Path, dict],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_args, plan = _data_overrides(config.read_text(), tmp_path, coco2017[0], vocdevkit[0])
    run = tmp_path / "run"
    common = ["-c", str(config), *CPU, *data_args, f"--trainer.default_root_dir={run}"]

    run_cli(["fit", *common, "--trainer.max_steps=2"])
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # One label space, from the data to the checkpoint: names and ids exactly the dataset's, and as many model
    # outputs as names (a second "background" or a missing class fails here).
    names, category_ids = plan["space"]
    model, meta = load_checkpoint(last)
    assert meta.class_names == names
    assert meta.category_ids == category_ids
    assert model.num_classes == len(names)
    if "mask_space" in plan:  # the joint model: the segmentation head's own label space too
        assert meta.mask_class_names == plan["mask_space"]
        assert model.seg_num_classes == len(plan["mask_space"])

    for stage, prefix in (("validate", "val"), ("test", "test")):
        run_cli([stage, *common, f"--ckpt_path={last}"])
        metrics = json.loads((run / f"{stage}_metrics.json").read_text())
        expected = {"detection": ["map"], "segmentation": ["miou"], "multitask": ["map", "miou"]}[plan["task"]]
        assert all(f"{prefix}/{key}" in metrics for key in expected), metrics

    out = tmp_path / "predicted"
    listed = (
        ["--annotations", str(plan["annotations"])]
        if "annotations" in plan
        else ["--split-list", str(plan["split_list"])]
        if "split_list" in plan
        else []
    )
    assert (
        cli_main(
            [
                "predict",
                "--weights",
                str(last),
                "--source",
                str(plan["source"]),
                *listed,
                "--output",
                str(out),
                "--score-threshold",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    classes = json.loads((out / "classes.json").read_text())
    assert classes["class_names"] == names
    capsys.readouterr()
    if "mask_space" in plan:
        assert classes["mask_class_names"] == plan["mask_space"]
    if plan["task"] in ("detection", "multitask"):
        predictions = json.loads((out / "predictions.json").read_text())
        gt = json.loads(Path(plan["gt"]).read_text())
        assert {p["image_id"] for p in predictions} <= {image["id"] for image in gt["images"]}
        assert {p["category_id"] for p in predictions} <= {c["id"] for c in gt["categories"]}
        assert (
            cli_main(
                [
                    "evaluate",
                    "detection",
                    "--gt",
                    str(plan["gt"]),
                    "--predictions",
                    str(out / "predictions.json"),
                    "--json",
                ]
            )
            == 0
        )
        assert "map" in json.loads(capsys.readouterr().out)
    if plan["task"] == "segmentation" or "mask_gt" in plan:
        mask_names = plan.get("mask_space", names)
        assert (
            cli_main(
                [
                    "evaluate",
                    "segmentation",
                    "--gt",
                    str(plan.get("mask_gt", plan["gt"])),
                    "--predictions",
                    str(out / "masks"),
                    *([] if "mask_gt" in plan else listed),
                    "--json",
                ]
            )
            == 0
        )
        result = json.loads(capsys.readouterr().out)
        assert len(result["iou_per_class"]) == len(mask_names)

    onnx = tmp_path / "model.onnx"
    assert cli_main(["export", "--weights", str(last), "--output", str(onnx)]) == 0  # fails on a parity mismatch
    exported = tmp_path / "predicted_onnx"
    assert (
        cli_main(
            [
                "predict",
                "--weights",
                str(onnx),
                "--source",
                str(plan["source"]),
                *listed,
                "--output",
                str(exported),
                "--score-threshold",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((exported / "classes.json").read_text())["class_names"] == names


@pytest.mark.parametrize("layout", ["voc", "yolo"])
def test_custom_detection_chain_on_each_folder_format(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The custom detection config on a labelImg folder and on an Ultralytics folder (the COCO export is a row of the
    test above): fit, validate, predict on the run's own val list, then `evaluate` by file name against the folder
    itself gives validate's 12 numbers."""
    write = {"voc": write_voc, "yolo": write_yolo}[layout]
    root = write(tmp_path / "own", make_truth(n=12))
    run, splits = tmp_path / "run", tmp_path / "lists"
    common = [
        "-c",
        str(next(c for c in CONFIGS if c.stem == "ssdlite_mobilenetv2_custom")),
        *CPU,
        f"--data.init_args.root={root}",
        f"--data.init_args.split_dir={splits}",
        "--data.init_args.input_size=96",
        "--data.init_args.batch_size=4",
        "--model.init_args.width_mult=0.35",
        f"--trainer.default_root_dir={run}",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=20"])
    last = run / "checkpoints" / "last.ckpt"
    _, meta = load_checkpoint(last)
    assert meta.class_names == ["background", *OWN_CLASSES]
    run_cli(["validate", *common, f"--ckpt_path={last}"])
    validated = json.loads((run / "validate_metrics.json").read_text())

    val_list = splits / "splits" / "val.txt"
    source = root if layout == "yolo" else root / "images"  # the lists name files as the reader found them
    out = tmp_path / "predicted"
    predict = ["predict", "--weights", str(last), "--source", str(source), "--split-list", str(val_list)]
    assert cli_main([*predict, "--output", str(out), "--score-threshold", "0.01", "--no-progress"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "detection", "--gt", str(root), "--split-list", str(val_list)]
    assert cli_main([*evaluate, "--predictions", str(out / "predictions.json"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert len(evaluated) == 12
    for key, value in evaluated.items():
        assert abs(value - validated[f"val/{key}"]) < 1e-4, (key, value, validated[f"val/{key}"])
