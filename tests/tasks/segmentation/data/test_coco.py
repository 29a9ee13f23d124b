"""COCO rendered to VOC classes for segmentation: overlap by area, structural errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data import (
    COCOSemantic,
    render_voc_mask,
)
from tests.fixtures.datasets import uncompressed_rle
from tests.tasks.segmentation.data.samples import (
    image,
    write_jpg,
)


def _rle(binary: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _coco(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    h, w = 30, 40
    couch = np.zeros((h, w), bool)
    couch[5:25, 5:35] = True
    person = np.zeros((h, w), bool)
    person[8:18, 10:20] = True  # on the couch: the smaller instance must win
    crowd = np.zeros((h, w), bool)
    crowd[20:30, 28:40] = True  # a crowd of persons, partly under the couch: void except where the couch is
    kite = np.zeros((h, w), bool)
    kite[0:4, 0:4] = True  # not a VOC class: background
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 63, "segmentation": _rle(couch), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": _rle(person), "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": uncompressed_rle(crowd), "iscrowd": 1},
        {"id": 4, "image_id": 1, "category_id": 38, "segmentation": _rle(kite), "iscrowd": 0},
        # a polygon (the usual COCO form) for a dining table, in image 2
        {"id": 5, "image_id": 2, "category_id": 67, "segmentation": [[2, 2, 20, 2, 20, 12, 2, 12]], "iscrowd": 0},
        {"id": 6, "image_id": 3, "category_id": 38, "segmentation": _rle(kite), "iscrowd": 0},  # no VOC class
    ]
    data = {
        "images": [{"id": i, "file_name": f"{i:06d}.jpg", "height": h, "width": w} for i in (1, 2, 3)],
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 38, "name": "kite"},
            {"id": 63, "name": "couch"},
            {"id": 67, "name": "dining table"},
        ],
    }
    images = tmp_path / "images"
    for i in (1, 2, 3):
        write_jpg(images / f"{i:06d}.jpg", image(i, h, w))
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(data))
    expected = np.zeros((h, w), np.uint8)
    expected[crowd] = 255
    expected[couch] = 18  # sofa
    expected[person] = 15  # person
    return images, annotation_file, expected


def test_coco_rendered_to_voc_classes(tmp_path: Path) -> None:
    images, annotation_file, expected = _coco(tmp_path)
    dataset = COCOSemantic(images, annotation_file)
    assert dataset.class_names[18] == "sofa" and dataset.category_to_class == {1: 15, 63: 18, 67: 11}
    assert dataset.ids == ["000001", "000002"]  # image 3 has only a kite
    assert dataset.report.extra["images_without_voc_classes"] == 1
    image, mask = dataset[0]
    assert image.shape == (3, 30, 40)
    assert np.array_equal(mask.numpy(), expected)
    table = dataset[1][1].numpy()
    assert (table[3:12, 3:20] == 11).all() and table[20:, :].max() == 0
    assert len(COCOSemantic(images, annotation_file, keep_empty=True)) == 3


def test_render_overlap_rule_is_by_area_not_order() -> None:
    big, small = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    big[:, :] = True
    small[2:4, 2:4] = True
    for order in ([0, 1], [1, 0]):
        anns = [{"category_id": 1, "segmentation": _rle(big)}, {"category_id": 2, "segmentation": _rle(small)}]
        mask = render_voc_mask([anns[i] for i in order], 8, 8, {1: 9, 2: 5})
        assert (mask[small] == 5).all() and (mask[~small] == 9).all()


def test_coco_structural_errors(tmp_path: Path) -> None:
    images, annotation_file, _ = _coco(tmp_path)
    data = json.loads(annotation_file.read_text())
    data["annotations"][0]["image_id"] = 99
    annotation_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="unknown image_id 99"):
        COCOSemantic(images, annotation_file)
    annotation_file.write_text("{not json")
    with pytest.raises(DatasetError, match="instances.json"):
        COCOSemantic(images, annotation_file)


# ----- shapes
