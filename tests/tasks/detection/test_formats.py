"""User detection formats: VOC XML in any layout, YOLO, COCO from labelling tools, format detection and the
round trip (the same boxes through all three)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from mobilevision.data.report import DataWarning, read_all
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.coco_tools import ToolCocoDetection
from mobilevision.tasks.detection.data.custom import detect_format, open_custom
from mobilevision.tasks.detection.data.voc_folder import VOCFolderDetection
from mobilevision.tasks.detection.data.yolo import YOLODetection, parse_yolo_rows
from tests.fixtures.own_data import CLASSES, boxes_by_image, make_truth, voc_xml, write_coco, write_voc, write_yolo

pytestmark = pytest.mark.filterwarnings("ignore::mobilevision.data.report.DataWarning")


def _expected(truth):
    return {
        t["name"]: sorted((CLASSES[c], tuple(float(v) for v in b)) for b, c in zip(t["boxes"], t["classes"]))
        for t in truth
    }


def test_round_trip_same_boxes_through_voc_yolo_coco(tmp_path):
    truth = make_truth()
    voc = VOCFolderDetection(write_voc(tmp_path / "voc", truth))
    coco = ToolCocoDetection(write_coco(tmp_path / "coco", truth) / "result.json")
    root = write_yolo(tmp_path / "yolo", truth)
    yolo = {**boxes_by_image(YOLODetection(root, "train").coco), **boxes_by_image(YOLODetection(root, "val").coco)}
    expected = _expected(truth)
    assert boxes_by_image(voc.coco) == expected
    assert boxes_by_image(coco.coco) == expected
    assert yolo == expected
    for dataset in (voc, coco):
        assert dataset.meta.class_names == ["background", *CLASSES]
        image, target = dataset[1]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert target["labels"].min() >= 1 and target["boxes"].shape[1] == 4


@pytest.mark.parametrize("flat", [False, True])
def test_voc_any_layout_by_filename_never_path(tmp_path, flat):
    truth = make_truth(4)
    dataset = VOCFolderDetection(write_voc(tmp_path, truth, flat=flat))
    assert len(dataset) == 4 and dataset.report.skipped_images == 0
    assert [r.file_name for r in dataset._records] == [t["name"] for t in truth]


def test_voc_names_fix_order_unknown_class_dropped_difficult(tmp_path):
    (tmp_path / "images").mkdir()
    write_voc(tmp_path, make_truth(2))
    xml = voc_xml("img000.png", (50, 50), [("zebra", [1, 1, 20, 20], False), ("dog", [2, 2, 30, 30], True)])
    (tmp_path / "annots" / "img000.xml").write_text(xml)
    with pytest.warns(DataWarning, match="zebra"):
        dataset = VOCFolderDetection(tmp_path, names=["dog", "cat"])
    assert dataset.meta.class_names == ["background", "dog", "cat"]
    assert dataset.report.extra["unknown_class"] == 1 and dataset.report.extra["difficult"] == 1
    assert len(dataset._records[0].boxes) == 0  # the difficult dog is not a training target
    assert dataset.coco.dataset["annotations"][0]["iscrowd"] == 1


def test_voc_bad_input(tmp_path):
    write_voc(tmp_path, make_truth(2))
    (tmp_path / "annots" / "img001.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match="img001.xml"):
        VOCFolderDetection(tmp_path)
    (tmp_path / "annots" / "img001.xml").unlink()
    with pytest.raises(DatasetError, match="twice"):
        VOCFolderDetection(tmp_path, names=["cat", "cat"])
    with pytest.raises(DatasetError, match="no VOC XML"):
        VOCFolderDetection(tmp_path / "images")


def test_voc_image_escaping_and_missing_skipped(tmp_path):
    write_voc(tmp_path, make_truth(3))
    (tmp_path / "annots" / "img001.xml").write_text(voc_xml("../../etc/passwd", (50, 50), []))
    (tmp_path / "images" / "img002.png").unlink()
    report = read_all(lambda: VOCFolderDetection(tmp_path))
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert len(reasons) == 2 and any("escapes" in r or "outside" in r for r in reasons.values())


def test_yolo_quirks_and_bad_rows(tmp_path):
    truth = make_truth(6)
    root = write_yolo(tmp_path, truth, names_as_dict=True)
    label = root / "labels" / "train" / "img001.txt"
    label.write_text(
        label.read_text()
        + "7 0.5 0.5 0.1 0.1\nnot a row\n0 0.5 0.5\n1 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3\n0 0.5 0.5 0 0.2\n"
    )
    (root / "labels" / "train" / "img002.txt").write_text("")
    with pytest.warns(DataWarning, match="img001.txt"):
        dataset = YOLODetection(root, "train")
    extra = dataset.report.extra
    assert extra["unknown_class"] == 1 and extra["malformed_rows"] == 2 and extra["dropped_boxes"] == 1
    assert extra["empty_or_missing_labels"] == 2 and extra["background_images"] == 2
    w, h = truth[1]["size"]
    polygon = [round(v, 3) for v in (0.1 * w, 0.1 * h, 0.4 * w, 0.3 * h)]
    assert ("dog", tuple(polygon)) in boxes_by_image(dataset.coco)["img001.png"]


def test_yolo_bad_yaml(tmp_path):
    root = write_yolo(tmp_path, make_truth(3))
    (root / "data.yaml").write_text("names: [a, b\ntrain: x")
    with pytest.raises(DatasetError, match="malformed YAML"):
        YOLODetection(root)
    for text, message in [
        ("names: []\ntrain: images/train\n", "empty"),
        ("names: [a, a]\ntrain: images/train\n", "twice"),
        ("names: {0: a, 2: b}\ntrain: images/train\n", "keys"),
        ("names: [a]\ntrain: images/nothing\n", "images/nothing"),
        ("names: [a]\ntrain: ../../outside\n", "outside|escapes"),
    ]:
        (root / "data.yaml").write_text(text)
        with pytest.raises(DatasetError, match=message):
            YOLODetection(root)


def test_parse_yolo_rows_units():
    boxes, classes, problems = parse_yolo_rows("0 0.5 0.5 0.2 0.4\n1 nan 0 0 0\n", 2)
    np.testing.assert_allclose(boxes, [[0.4, 0.3, 0.6, 0.7]])
    assert classes.tolist() == [0] and len(problems) == 1


def test_coco_tool_quirks(tmp_path):
    truth = make_truth(5)
    root = write_coco(tmp_path, truth, parent_category=True)
    data = json.loads((root / "result.json").read_text())
    data["images"][0]["width"] += 20  # disagrees with the file
    data["images"][1]["file_name"] = "/home/labeller/uploads/" + truth[1]["name"]  # the tool's own path
    (root / "result.json").write_text(json.dumps(data))
    report = read_all(lambda: ToolCocoDetection(root / "result.json", root))
    notes = "\n".join(report.extra["notes"])
    assert "dropped category 0 'animals' with no annotations" in notes and "area" in notes
    assert report.extra["found_by_base_name"] == 1 and report.skipped_images == 0
    assert report.extra["size_disagrees_with_file"] == 1 and report.extra["background_images"] == 1
    dataset = ToolCocoDetection(root / "result.json", root)
    assert dataset.meta.class_names == ["background", *CLASSES] and dataset.meta.category_ids == [0, 1, 2]


def test_coco_tool_refusals_name_the_entry(tmp_path):
    root = write_coco(tmp_path, make_truth(3))
    data = json.loads((root / "result.json").read_text())
    bad = {
        **data,
        "annotations": [*data["annotations"], {"id": 500, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]}],
    }
    (root / "result.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="annotation id 500: unknown category id 9"):
        ToolCocoDetection(root / "result.json")
    dup = {**data, "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "cat"}]}
    (root / "result.json").write_text(json.dumps(dup))
    with pytest.raises(DatasetError, match="twice"):
        ToolCocoDetection(root / "result.json")
    (root / "result.json").write_text("{")
    with pytest.raises(DatasetError, match="malformed JSON"):
        ToolCocoDetection(root / "result.json")


def test_detect_format_and_splits(tmp_path):
    truth = make_truth(10)
    assert detect_format(write_voc(tmp_path / "voc", truth)) == "voc"
    assert detect_format(write_yolo(tmp_path / "yolo", truth)) == "yolo"
    assert detect_format(write_coco(tmp_path / "coco", truth)) == "coco"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="looked for YOLO"):
        detect_format(tmp_path / "empty")
    splits = open_custom(tmp_path / "voc", split="every_5th")
    assert [r.file_name for r in splits.val._records] == ["img001.png", "img006.png"]
    assert len(splits.train) == 8
    hashed = open_custom(tmp_path / "voc", val_fraction=0.3)
    assert set(hashed.train.file_names).isdisjoint(hashed.val.file_names)
    assert len(hashed.train) + len(hashed.val) == 10
    yolo = open_custom(tmp_path / "yolo")
    assert yolo.how == "yaml" and len(yolo.train) + len(yolo.val) == 10


def test_hash_split_stable_when_files_added():
    from mobilevision.data.name_split import split_names

    names = [f"{i:05d}.jpg" for i in range(100)]
    _, val = split_names(names, val_fraction=0.2)
    _, val_more = split_names(names + [f"new{i}.jpg" for i in range(50)], val_fraction=0.2)
    assert set(val) <= set(val_more) and 5 < len(val) < 40
    with pytest.raises(DatasetError, match="no validation"):
        split_names(["a.jpg"], val_fraction=0.2)


def test_no_warning_on_clean_data(tmp_path):
    root = write_voc(tmp_path, make_truth(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        VOCFolderDetection(root)


def test_explicit_split_folders_and_lists(tmp_path):
    truth = make_truth(9)
    write_voc(tmp_path / "voc" / "train", truth[:6])
    write_voc(tmp_path / "voc" / "val", truth[6:], flat=True)
    assert detect_format(tmp_path / "voc") == "voc"
    splits = open_custom(tmp_path / "voc")
    assert splits.how == "folders" and (len(splits.train), len(splits.val)) == (6, 3)
    assert splits.train.meta.class_names == splits.val.meta.class_names == ["background", *CLASSES]
    for name, part in (("train", truth[:6]), ("valid", truth[6:])):
        write_coco(tmp_path / "rf" / name, part, parent_category=True)
        (tmp_path / "rf" / name / "result.json").rename(tmp_path / "rf" / name / "_annotations.coco.json")
    roboflow = open_custom(tmp_path / "rf")
    assert roboflow.how == "folders" and (len(roboflow.train), len(roboflow.val)) == (6, 3)
    root = write_yolo(tmp_path / "yolo", truth)
    (root / "train.txt").write_text("".join(f"./images/train/{t['name']}\n" for t in truth[:3]))
    (root / "data.yaml").write_text("path: .\ntrain: train.txt\nval: [images/val]\nnames: [cat, dog]\n")
    listed = open_custom(root)
    assert len(listed.train) == 3 and len(listed.val) == 3


def test_yolo_roboflow_parent_paths(tmp_path):
    truth = make_truth(4)
    root = write_yolo(tmp_path / "src", truth)
    rf = tmp_path / "rf"
    for split in ("train", "val"):
        (rf / split).mkdir(parents=True)
        (root / "images" / split).rename(rf / split / "images")
        if (root / "labels" / split).is_dir():
            (root / "labels" / split).rename(rf / split / "labels")
    (rf / "data.yaml").write_text("train: ../train/images\nval: ../val/images\nnc: 2\nnames: [cat, dog]\n")
    dataset = YOLODetection(rf, "train")
    assert len(dataset) == 2 and "Roboflow" in dataset.report.extra["notes"][0]
    assert boxes_by_image(dataset.coco)["img001.png"] == _expected(truth)["img001.png"]
