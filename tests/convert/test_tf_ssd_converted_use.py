"""A converted TF SSDLite (the fixture's width 0.35) works like any mobilevision detection checkpoint: predict on a
photo, export to ONNX (with the export's own parity check) and int8, validate on a COCO-layout miniature, and
fine-tune from `init_from` on another class list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mobilevision.cli import main

from .test_tf_checkpoint import unpack

KANGAROO = Path("/work/shared/data/kangaroo/images")
SIZE = 96  # tiny and fast; the zoo's is 300


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ssd")
    prefix = unpack("ssdlite_mobilenet_v2_035_coco", root)
    ckpts = {}
    for labels in ("coco91", "coco80"):
        ckpts[labels] = root / f"{labels}.ckpt"
        argv = ["convert", "tf", str(prefix), "--output", str(ckpts[labels]), "--input-size", str(SIZE)]
        assert main([*argv, "--labels", labels]) == 0
    images = root / "images"
    images.mkdir()
    photos = sorted(KANGAROO.glob("*.jpg"))[:2]
    if photos:
        for photo in photos:
            shutil.copy(photo, images / photo.name)
    else:  # the shared data is not everywhere (CI copies it); a synthetic photo keeps the test meaningful
        import cv2
        import numpy as np

        cv2.imwrite(str(images / "0.jpg"), np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))
    return ckpts, images


def test_converted_detector_predicts_coco_ids(converted, tmp_path) -> None:
    ckpts, images = converted
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(ckpts["coco80"]), "--source", str(images), "--output", str(out)]
    assert main([*argv, "--score-threshold", "0.5", "--no-progress"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and {p["image_id"] for p in predictions} == set(range(1, len(list(images.iterdir())) + 1))
    from mobilevision.convert.tf_ssd import COCO_80_IDS

    assert {p["category_id"] for p in predictions} <= set(COCO_80_IDS)  # the dataset's ids, gaps never used


def test_coco80_keeps_the_91_output_detections_of_real_classes(converted) -> None:
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.convert.tf_ssd import COCO_80_IDS

    full, meta91 = load_checkpoint(converted[0]["coco91"])
    compact, meta80 = load_checkpoint(converted[0]["coco80"])
    assert meta91.category_ids == list(range(91)) and meta80.category_ids == [0, *COCO_80_IDS]
    x = torch.randint(0, 255, (1, 3, SIZE, SIZE)).float()
    with torch.no_grad():
        a, _ = full.forward_raw(x)
        b, _ = compact.forward_raw(x)
    torch.testing.assert_close(b["cls_logits"], a["cls_logits"][..., [0, *COCO_80_IDS]])
    torch.testing.assert_close(b["bbox_regression"], a["bbox_regression"])


def test_converted_detector_exports_with_parity_and_int8(converted, tmp_path) -> None:
    ckpts, images = converted
    onnx = tmp_path / "ssd.onnx"
    argv = ["export", "--weights", str(ckpts["coco91"]), "--output", str(onnx)]
    assert main([*argv, "--int8", "--calibration", str(images), "--calibration-images", "2"]) == 0
    assert onnx.is_file() and onnx.with_suffix(".int8.onnx").is_file()


def test_converted_detector_validates_on_a_coco_miniature(converted, coco2017) -> None:
    import lightning.pytorch as pl

    from mobilevision.tasks.detection.datamodule import CocoDataModule

    root, _ = coco2017
    data = CocoDataModule(root=str(root), input_size=SIZE, batch_size=4, num_workers=0)
    import warnings

    from mobilevision.checkpoint import load_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # COCO's 81 labels are the coco80 checkpoint's: nothing starts fresh
        task = _task(converted[0]["coco80"], num_classes=81)
    source, _ = load_checkpoint(converted[0]["coco80"])
    assert all(torch.equal(a, b) for a, b in zip(task.model.state_dict().values(), source.state_dict().values()))
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(task, datamodule=data)
    assert 0.0 <= metrics["val/map"] <= 1.0 and metrics["val/loss"] > 0


def _task(ckpt: Path, num_classes: int, **kwargs):
    """A DetectionTask with the converted architecture (what docs/pretrained.md's config sets)."""
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.models.anchors import DefaultBoxes
    from mobilevision.tasks.detection.module import DetectionTask

    _, meta = load_checkpoint(ckpt)
    arch = meta.model_kwargs
    boxes = DefaultBoxes(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch["default_boxes"].items()})
    return DetectionTask(
        num_classes=num_classes,
        width_mult=arch["width_mult"],
        extra_depths=arch["extra_depths"],
        backbone_kwargs=arch["backbone_kwargs"],
        default_boxes=boxes,
        classification="sigmoid",
        tf_exact=True,
        zero_init_residual=False,
        input_size=SIZE,
        init_from=str(ckpt),
        **kwargs,
    )


def test_converted_detector_fine_tunes_on_another_class_list(converted, tmp_path) -> None:
    import lightning.pytorch as pl

    from mobilevision.checkpoint import load_checkpoint

    ckpt = converted[0]["coco91"]
    source, _ = load_checkpoint(ckpt)
    with pytest.warns(UserWarning, match="class-specific tensors have another class count"):
        task = _task(ckpt, num_classes=2)  # background + kangaroo
    own, theirs = task.model.state_dict(), source.state_dict()
    fresh = set(task.class_specific_keys())
    assert len(fresh) == 12
    assert all(torch.equal(own[k], theirs[k]) for k in own if k not in fresh)  # everything else is converted
    images = torch.randint(0, 255, (4, 3, SIZE, SIZE)).float()
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 80.0]]), "labels": torch.tensor([1])} for _ in range(4)]
    loader = torch.utils.data.DataLoader(
        list(zip(images, targets)),
        batch_size=2,
        collate_fn=lambda b: (torch.stack([i for i, _ in b]), [t for _, t in b]),
    )
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(task, train_dataloaders=loader)
    assert trainer.global_step == 2
    moved = max(float((task.model.state_dict()[k] - theirs[k]).abs().max()) for k in own if k not in fresh)
    assert moved > 0
