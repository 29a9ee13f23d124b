"""`mobilevision data check` on the miniature real layouts reports exactly what the fixture put there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilevision.cli import main
from tests.fixtures.datasets import Expected


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["data", "check", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _same(report: dict, expected: Expected, *, detection: bool = True) -> None:
    assert report["images"] == expected.images
    assert report["skipped_images"] == expected.skipped
    assert report["usable_images"] == expected.images - expected.skipped
    if detection:
        assert report["dropped_boxes"] == expected.dropped_boxes
        assert report["clipped_boxes"] == expected.clipped_boxes
        assert report["crowd"] == expected.crowd
    for key, value in expected.extra.items():
        assert report[key] == value, key


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco2017_counts(coco2017: tuple[Path, dict], split: str, capsys: pytest.CaptureFixture[str]) -> None:
    root, expected = coco2017
    report = _check(
        capsys,
        "--format",
        "coco",
        "--images",
        str(root / f"{split}2017"),
        "--annotations",
        str(root / "annotations" / f"instances_{split}2017.json"),
    )
    _same(report, expected[split])
    assert report["object_classes"] == 80
    reasons = {item["file"]: item["reason"] for item in report["skipped"]}
    if split == "train":
        assert any("truncated" in r for r in reasons.values()) and any("not found" in r for r in reasons.values())


def test_coco_exif_rotated_image_is_read_in_the_annotated_frame(coco2017: tuple[Path, dict]) -> None:
    """The validation split's portrait photo is stored landscape with EXIF orientation 6 and annotated as stored:
    its boxes must come back untouched, not clipped against a rotated image."""
    import warnings

    from mobilevision.tasks.detection.data import coco2017 as open_coco

    root, _ = coco2017
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no repair warning for this image
        dataset = open_coco(root, "val")
    index = len(dataset) - 1
    image, target = dataset[index]
    info = dataset.coco.imgs[target["image_id"]]
    assert tuple(image.shape[1:]) == (info["height"], info["width"])
    record = dataset._records[index]
    assert target["boxes"].numpy().tolist() == record.boxes.tolist()
    assert dataset.report.extra["exif_frame_kept"] == 1


@pytest.mark.parametrize(
    ("year", "split", "key"),
    [
        ("2007", "trainval", "det/2007/trainval"),
        ("2007", "test", "det/2007/test"),
        ("2012", "trainval", "det/2012/trainval"),
    ],
)
def test_voc_detection_counts(
    vocdevkit: tuple[Path, dict], year: str, split: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, expected = vocdevkit
    report = _check(capsys, "--format", "voc-det", "--root", str(root), "--split", split, "--year", year)
    _same(report, expected[key])
    assert report["difficult"] == expected[key].difficult
    assert report["object_classes"] == 20


@pytest.mark.parametrize("split", ["train", "val", "train_aug"])
def test_voc_segmentation_counts_with_sbd(
    vocdevkit: tuple[Path, dict], split: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, expected = vocdevkit
    _same(
        _check(capsys, "--format", "voc-seg", "--root", str(root), "--split", split),
        expected[f"seg/{split}"],
        detection=False,
    )


def test_voc_segmentation_train_aug_from_segmentation_class_aug(
    vocdevkit_aug: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    root, size = vocdevkit_aug
    report = _check(capsys, "--format", "voc-seg", "--root", str(root), "--split", "train_aug")
    assert report["images"] == size and report["skipped_images"] == 0
    assert report["val_images_excluded"] == 3  # the list names every VOC val image; none may be trained on
