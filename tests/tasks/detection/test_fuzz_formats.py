"""Hostile user-format files: YOLO rows and data.yaml, VOC XML in a labelImg folder, labelling-tool COCO dicts give a
dataset (samples keep the target contract) or one `DatasetError`, never another exception.

Fixed example counts and `derandomize=True`, as in test_fuzz_data.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.coco_tools import ToolCocoDetection, normalise_tool_coco
from mobilevision.tasks.detection.data.voc_folder import VOCFolderDetection
from mobilevision.tasks.detection.data.yolo import YOLODetection, parse_yolo_rows
from tests.tasks.detection.test_fuzz_data import JSON, coco_dicts

FUZZ = settings(
    max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
TOKENS = st.sampled_from(["0", "1", "7", "-1", "0.5", "1e9", "nan", "inf", "-0.2", "1.5", "x", "", "0.1", "2.0"])
ROW = st.lists(TOKENS, max_size=10).map(" ".join)


def _check_samples(dataset: Any) -> None:
    for index in range(len(dataset)):
        sample = dataset[index]
        if sample is None:
            continue
        image, target = sample
        boxes = target["boxes"]
        assert image.ndim == 3 and boxes.shape[1:] == (4,) and len(boxes) == len(target["labels"])
        assert bool((boxes[:, 2] > boxes[:, 0]).all()) and bool((boxes[:, 3] > boxes[:, 1]).all())
        h, w = image.shape[1:]
        assert bool((boxes[:, [0, 2]] <= w).all()) and bool((boxes[:, [1, 3]] <= h).all())
        if len(target["labels"]):
            assert 1 <= int(target["labels"].min()) and int(target["labels"].max()) < dataset.meta.num_classes


@FUZZ
@given(text=st.lists(ROW, max_size=6).map("\n".join), num_classes=st.integers(1, 3))
def test_yolo_rows_never_raise(text: str, num_classes: int) -> None:
    boxes, classes, problems = parse_yolo_rows(text, num_classes)
    assert boxes.shape == (len(classes), 4) and np.isfinite(boxes).all()
    assert ((0 <= classes) & (classes < num_classes)).all()


YAML_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda names, train: f"names: {names}\ntrain: {train}\nval: {train}\n",
        st.sampled_from(["[a, b]", "[]", "[a, a]", "{0: a, 1: b}", "{1: a}", "a", "[[x]]", "{a: 0}", "[a, null]"]),
        st.sampled_from(["images/train", "list.txt", "../x", "/etc", "", "[images/train, images/train]", "7"]),
    ),
)


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / "train" / "a.png")
    (root / "images" / "train" / "bad.jpg").write_bytes(b"\xff\xd8\xffjunk")
    (root / "list.txt").write_text("images/train/a.png\n../../etc/passwd\nimages/train/missing.png\n")
    return root


@FUZZ
@given(yaml_text=YAML_TEXT, rows=st.lists(ROW, max_size=5).map("\n".join))
def test_yolo_dataset_or_dataset_error(yolo_root: Path, yaml_text: str, rows: str) -> None:
    (yolo_root / "data.yaml").write_text(yaml_text)
    (yolo_root / "labels" / "train" / "a.txt").write_text(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            dataset = YOLODetection(yolo_root, "train")
        except DatasetError:
            return
        _check_samples(dataset)


XML_PARTS = st.sampled_from(
    [
        "<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox>"
        "<difficult>{e}</difficult></object>",
        "<object><name>{n}</name></object>",
        "<size><width>{a}</width><height>{c}</height></size>",
        "<filename>{f}</filename>",
        "<path>/home/x/{f}</path>",
        "<object>",
        "&lol;",
    ]
)
VALUES = st.sampled_from(["1", "0", "-5", "30", "1e9", "nan", "inf", "x", "", "25"])


@st.composite
def voc_xmls(draw: st.DrawFn) -> str:
    parts = []
    for template in draw(st.lists(XML_PARTS, max_size=5)):
        fields = {k: draw(VALUES) for k in "abcde"}
        fields["n"] = draw(st.sampled_from(["cat", "", "dog", "<x>", "kangaroo"]))
        fields["f"] = draw(st.sampled_from(["a.png", "../a.png", "/etc/passwd", "missing.jpg", "", "bad.jpg"]))
        parts.append(template.format(**fields))
    return "<annotation>" + "".join(parts) + "</annotation>"


@FUZZ
@given(xmls=st.lists(voc_xmls(), min_size=1, max_size=3), names=st.sampled_from([None, ["cat"], ["dog", "cat"]]))
def test_voc_folder_dataset_or_dataset_error(tmp_path_factory: pytest.TempPathFactory, xmls: list[str], names) -> None:
    root = tmp_path_factory.mktemp("voc")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "a.png")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xffjunk")
    for i, xml in enumerate(xmls):
        (root / f"x{i}.xml").write_text(xml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            dataset = VOCFolderDetection(root, names=names)
        except DatasetError:
            return
        _check_samples(dataset)


@FUZZ
@given(data=coco_dicts() | JSON, zero_based=st.booleans())
def test_tool_coco_dataset_or_dataset_error(tmp_path_factory: pytest.TempPathFactory, data: Any, zero_based: bool):
    if zero_based and isinstance(data, dict) and isinstance(data.get("categories"), list):
        for category in data["categories"]:
            if isinstance(category, dict) and isinstance(category.get("id"), int):
                category["id"] -= 1  # Label Studio's ids from 0; an unused 0 may be a Roboflow parent
    try:
        normalise_tool_coco(json.loads(json.dumps(data)), "fuzz.json")
    except DatasetError:
        pass
    root = tmp_path_factory.mktemp("coco")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "a.jpg")
    (root / "ann.json").write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            dataset = ToolCocoDetection(root / "ann.json", root)
        except DatasetError:
            return
        _check_samples(dataset)


@pytest.mark.parametrize("value", [True, 3, "x", {"id": 1}])
def test_tool_coco_non_list_annotations_is_one_line(value: Any):
    # Found by the fuzzer above: `"annotations": true` raised TypeError while looking for a Roboflow parent category.
    data = {"images": [], "annotations": value, "categories": [{"id": 0, "name": "a", "supercategory": "a"}]}
    with pytest.raises(DatasetError, match=r"fuzz\.json.*'annotations'"):
        normalise_tool_coco(data, "fuzz.json")
