"""Detection datasets: VOC XML parsing (difficult, 1-based boxes, unsafe XML), the label mapping, box repair, and SSD
augmentation that keeps every box on the pixels it covers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevision.data.decode import BadSample
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import (
    CocoDetection,
    DetectionMeta,
    VOCDetection,
    collate_detection,
    eval_transforms,
    parse_voc_xml,
    sanitize_boxes,
    train_transforms,
    voc0712_trainval,
)


def _xml(objects: list[tuple[str, tuple[int, int, int, int], int]], width: int = 100, height: int = 80) -> bytes:
    body = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{body}</annotation>"
    ).encode()


def test_parse_voc_xml_difficult_and_one_based_boxes() -> None:
    ann = parse_voc_xml(_xml([("dog", (1, 1, 50, 40), 0), ("person", (10, 20, 30, 60), 1)]), "a.xml")
    assert (ann.width, ann.height) == (100, 80)
    assert [(o.name, o.box, o.difficult) for o in ann.objects] == [
        ("dog", (0.0, 0.0, 50.0, 40.0), False),
        ("person", (9.0, 19.0, 30.0, 60.0), True),
    ]


def test_parse_voc_xml_rejects_unknown_class_and_unsafe_xml() -> None:
    with pytest.raises(DatasetError, match=r"a\.xml.*'unicorn'"):
        parse_voc_xml(_xml([("unicorn", (1, 1, 5, 5), 0)]), "a.xml")
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<annotation>&lol2;</annotation>"
    )
    with pytest.raises(BadSample, match="forbidden"):
        parse_voc_xml(bomb, "bomb.xml")
    with pytest.raises(BadSample, match="malformed"):
        parse_voc_xml(b"<annotation><size>", "cut.xml")


def _voc_year(root: Path, year: str, items: dict[str, list[tuple[str, tuple[int, int, int, int], int]]]) -> None:
    base = root / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name, objects in items.items():
        Image.fromarray(np.full((80, 100, 3), 90, np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
        (base / "Annotations" / f"{name}.xml").write_bytes(_xml(objects))
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{n}\n" for n in items))


def test_voc_dataset_difficult_and_0712_combination(tmp_path: Path) -> None:
    _voc_year(tmp_path, "2007", {"000001": [("dog", (1, 1, 50, 40), 0), ("cat", (10, 20, 30, 60), 1)], "000002": []})
    _voc_year(tmp_path, "2012", {"2008_000001": [("car", (5, 5, 120, 70), 0)]})
    dataset = voc0712_trainval(tmp_path)
    assert len(dataset) == 3 and dataset.ids == ["VOC2007/000001", "VOC2007/000002", "VOC2012/2008_000001"]
    image, target = dataset[0]
    assert image.shape == (3, 80, 100) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [12]  # dog; the difficult cat is not a training target
    assert target["boxes"].tolist() == [[0.0, 0.0, 50.0, 40.0]]
    assert target["image_id"] == 1 and target["orig_size"] == (80, 100)
    assert dataset[1][1]["boxes"].shape == (0, 4)  # an image without objects stays
    assert dataset[2][1]["boxes"].tolist() == [[4.0, 4.0, 100.0, 70.0]]  # clipped to the 100 px width
    assert dataset.report.extra["clipped_boxes"] == 1 and dataset.report.extra["difficult"] == 1
    # The ground truth keeps the difficult object as crowd, so COCOeval ignores detections on it.
    gt = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=[1]))
    assert sorted((a["category_id"], a["iscrowd"]) for a in gt) == [(8, 1), (12, 0)]
    with_difficult = VOCDetection(tmp_path / "VOC2007", "trainval", keep_difficult=True)
    assert with_difficult[0][1]["labels"].tolist() == [12, 8]
    assert len(VOCDetection(tmp_path, "trainval", years=["2012"])) == 1


def test_meta_round_trip_with_non_contiguous_ids() -> None:
    meta = DetectionMeta.from_categories(
        [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 13, "name": "stop sign"}]
    )
    assert meta.class_names == ["background", "person", "stop sign", "toothbrush"]
    assert meta.category_ids == [0, 1, 13, 90] and meta.num_classes == 4 and meta.num_object_classes == 3
    assert [meta.label_of(c) for c in (1, 13, 90)] == [1, 2, 3]
    assert [meta.category_of(label) for label in (1, 2, 3)] == [1, 13, 90]
    again = DetectionMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta and again.label_of(90) == 3
    with pytest.raises(ValueError, match="background"):
        DetectionMeta(["person"], [1])
    with pytest.raises(ValueError, match="0"):
        meta.category_of(0)


def test_sanitize_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [5, 5, 5, 9], [3, 8, 9, 2], [-5, 2, 5, 12], [120, 0, 130, 5], [np.nan, 0, 1, 1]], float
    )
    kept, keep, clipped = sanitize_boxes(boxes, 100, 10)
    assert keep.tolist() == [True, False, False, True, False, False]
    assert kept.tolist() == [[0, 0, 10, 10], [0, 2, 5, 10]] and clipped == 1


def test_coco_dataset_meta_must_match(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [], "categories": [{"id": 4, "name": "x"}]}))
    dataset = CocoDetection(tmp_path / "images", path)
    assert dataset.meta.category_ids == [0, 4] and len(dataset) == 0
    with pytest.raises(DatasetError, match="differ"):
        CocoDetection(tmp_path / "images", path, meta=DetectionMeta(["background", "y"], [0, 5]))


COLOURS = {1: (255, 0, 0), 2: (0, 0, 255), 3: (0, 255, 0)}


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((240, 320, 3), 128, np.uint8)
    boxes = np.array([[20, 30, 120, 100], [200, 150, 300, 230], [150, 40, 170, 60]], np.float32)
    for (x1, y1, x2, y2), label in zip(boxes.astype(int), (1, 2, 3)):
        image[y1:y2, x1:x2] = COLOURS[label]
    return image, boxes, np.array([1, 2, 3])


def _colour_mask(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(image.astype(int) - colour).max(-1) < 40


@pytest.mark.parametrize("seed", range(40))
def test_augmentation_keeps_boxes_on_their_pixels(seed: int) -> None:
    image, boxes, labels = _scene()
    transform = train_transforms(160, photometric=False, seed=seed)
    out = transform(image=image, bboxes=boxes, labels=labels)
    result = out["image"]
    assert result.shape == (160, 160, 3) and result.dtype == np.uint8
    assert len(out["bboxes"]) == len(out["labels"])
    for box, label in zip(np.asarray(out["bboxes"]), np.asarray(out["labels"])):
        colour = _colour_mask(result, COLOURS[int(label)])
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 160
        inner = colour[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
        if inner.size:
            assert inner.mean() > 0.9, f"box {box} of label {label} is not on its colour"
        # Every pixel of that colour is inside its box (one pixel of slack for interpolated edges).
        ys, xs = np.nonzero(colour)
        if ys.size:
            assert xs.min() >= x1 - 1.5 and xs.max() <= x2 + 0.5 and ys.min() >= y1 - 1.5 and ys.max() <= y2 + 0.5


def test_photometric_only_changes_colours_and_eval_resizes() -> None:
    image, boxes, labels = _scene()
    out = train_transforms(160, zoom_out=False, min_iou_crop=False, hflip=False, seed=0)(
        image=image, bboxes=boxes, labels=labels
    )
    np.testing.assert_allclose(np.asarray(out["bboxes"]), boxes * [0.5, 2 / 3, 0.5, 2 / 3], atol=1e-3)
    out = eval_transforms((120, 160))(image=image, bboxes=boxes, labels=labels)
    assert out["image"].shape == (120, 160, 3)
    np.testing.assert_allclose(np.asarray(out["bboxes"]), boxes / 2, atol=1e-4)
    assert np.asarray(out["labels"]).tolist() == [1, 2, 3]


def test_dataset_with_transforms_and_collate(tmp_path: Path) -> None:
    from mobilevision.data.shapes import generate_shapes

    paths = generate_shapes(tmp_path / "s", num_images=6, seed=0, image_size=(96, 128))
    torch.manual_seed(0)
    first = CocoDetection(paths.images, paths.annotations, transforms=train_transforms(64))
    torch.manual_seed(0)
    second = CocoDetection(paths.images, paths.annotations, transforms=train_transforms(64))
    a, b = first[3], second[3]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])  # seeded from torch's seed
    assert a[1]["orig_size"] == (96, 128)
    images, targets = collate_detection([first[0], None, first[1]])
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8 and len(targets) == 2
    assert targets[0]["boxes"].dtype == torch.float32 and targets[0]["labels"].dtype == torch.int64
    empty_images, empty_targets = collate_detection([None])
    assert empty_images.shape[0] == 0 and empty_targets == []
