"""Hostile annotation files: COCO json and VOC XML give a dataset (whose samples keep the target contract) or one
clear error (`DatasetError` for the structure, `BadSample` for one VOC file), never another exception or a hang.
XML entity expansion ("billion laughs", external entities) is refused by defusedxml.

Fixed example counts and `derandomize=True`: CI runs the same inputs every time, in bounded time.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilevision.data.decode import BadSample
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import (
    VOC_CLASSES,
    CocoDetection,
    VOCDetection,
    eval_transforms,
    parse_voc_xml,
    train_transforms,
    validate_coco,
)

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
# No single input may take long: a hang or a quadratic blow-up fails here rather than stalling CI.
PER_EXAMPLE_SECONDS = 5.0

HUGE = [10**400, -(10**400), 2**63, -(2**63) - 1]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-5, 8)
    | st.sampled_from(HUGE)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
FILE_NAMES = [
    "a.jpg",
    "b.png",
    "grey.png",
    "bad.jpg",
    "empty.jpg",
    "missing.jpg",
    "../escape.jpg",
    "/etc/passwd",
    "",
    ".",
    "sub",
    "a\x00.jpg",
    "x" * 300,
    "\ud800.jpg",
]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with good images (RGB, grey), an undecodable one, an empty one and a sub-folder."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(root / "b.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "grey.png")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "empty.jpg").write_bytes(b"")
    (root / "sub").mkdir()
    return root


@st.composite
def _valid_coco(draw: st.DrawFn) -> dict[str, Any]:
    """A structurally valid COCO dict whose contents are still hostile: boxes with NaN, inf, negative or zero sizes,
    file names that are missing, undecodable, empty, absolute, escaping, NUL or unencodable, stated sizes that are
    absent, zero or absurd, crowd flags."""
    number = (
        st.floats(-50, 100, allow_nan=False)
        | st.integers(-10, 100)
        | st.sampled_from([math.nan, math.inf, -math.inf, 1e308])
    )
    images = []
    for position in range(draw(st.integers(1, 4))):
        image: dict[str, Any] = {"id": position + 1, "file_name": draw(st.sampled_from(FILE_NAMES))}
        if draw(st.booleans()):
            image["width"] = draw(st.sampled_from([32, 20, 16, 64, 0, -1, 2**40]))
            image["height"] = draw(st.sampled_from([24, 40, 16, 8, 0]))
        images.append(image)
    categories = [
        {"id": 2 * position + 1, "name": draw(st.text(max_size=5))} for position in range(draw(st.integers(1, 3)))
    ]
    annotations = []
    for position in range(draw(st.integers(0, 6))):
        ann: dict[str, Any] = {
            "image_id": draw(st.sampled_from([i["id"] for i in images])),
            "category_id": draw(st.sampled_from([c["id"] for c in categories])),
            "bbox": draw(st.lists(number, min_size=4, max_size=4)),
        }
        if draw(st.booleans()):
            ann["id"] = position + 10
        if draw(st.booleans()):
            ann["iscrowd"] = draw(st.sampled_from([0, 1]))
        annotations.append(ann)
    return {"images": images, "categories": categories, "annotations": annotations}


def _corrupt(draw: st.DrawFn, node: Any) -> Any:
    """Replace, delete or duplicate one value somewhere inside `node` (a JSON tree), or `node` itself."""
    if isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["descend", "delete", "duplicate"]))
        if action == "delete":
            del node[key]
        elif action == "duplicate" and isinstance(node, list):
            node.append(json.loads(json.dumps(node[key])))
        else:
            node[key] = _corrupt(draw, node[key])
        return node
    return draw(JSON)


@st.composite
def coco_dicts(draw: st.DrawFn) -> Any:
    """A valid-shaped COCO dict with 0..3 corruptions: junk values (wrong types, huge or non-finite numbers, nested
    junk), deleted keys or entries, duplicated entries (duplicate ids)."""
    data: Any = draw(_valid_coco())
    for _ in range(draw(st.integers(0, 3))):
        data = _corrupt(draw, data)
    return data


def _event(name: str) -> None:
    # Outcome counts for `pytest --hypothesis-show-statistics`; the parametrized tests share the checker.
    if currently_in_test_context():
        event(name)


class _Files:
    """One annotation file per example (hypothesis reruns examples, a fixture's tmp_path would be shared)."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0

    def write(self, payload: bytes) -> Path:
        self.count += 1
        path = self.root / f"ann{self.count}.json"
        path.write_bytes(payload)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> _Files:
    return _Files(tmp_path_factory.mktemp("annotations"))


def _check_coco(images: Path, path: Path, transforms: Any) -> None:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DataWarning for every skipped image: expected here
        try:
            dataset = CocoDetection(images, path, transforms=transforms)
        except DatasetError as error:
            message = str(error)
            assert message.startswith(str(path)) and "\n" not in message, message
            _event("DatasetError" + message[len(str(path)) :][:40])
            return
        k = dataset.meta.num_object_classes
        for index in range(len(dataset)):
            sample = dataset[index]
            if sample is None:
                _event("sample skipped")
                continue
            _event("sample read")
            image, target = sample
            assert image.dtype.is_floating_point is False and image.ndim == 3 and image.shape[0] == 3
            boxes, labels = target["boxes"].numpy(), target["labels"].numpy()
            assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
            assert np.isfinite(boxes).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            h, w = image.shape[1:]
            assert (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert ((labels >= 1) & (labels <= k)).all()
            assert isinstance(target["file"], str) and isinstance(target["image_id"], int)
        assert dataset.report.images == len(dataset)
    assert time.perf_counter() - start < PER_EXAMPLE_SECONDS


@settings(FUZZ, max_examples=300)
@given(coco_dicts())
def test_validate_coco_gives_a_dict_or_a_dataset_error(data: Any) -> None:
    try:
        fixed = validate_coco(data, "ann.json")
    except DatasetError as error:
        assert str(error).startswith("ann.json") and "\n" not in str(error)
        return
    assert isinstance(fixed["annotations"], list)
    assert len({a["id"] for a in fixed["annotations"]}) == len(fixed["annotations"])


@settings(FUZZ, max_examples=150)
@given(coco_dicts(), st.sampled_from(["none", "eval", "train"]), st.integers(0, 2**16))
def test_coco_dataset_from_hostile_json(images: Path, files: _Files, data: Any, kind: str, seed: int) -> None:
    transforms = {"none": None, "eval": eval_transforms(32), "train": train_transforms(32, seed=seed)}[kind]
    _check_coco(images, files.write(json.dumps(data).encode()), transforms)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_coco_dataset_from_random_bytes(images: Path, files: _Files, payload: bytes) -> None:
    _check_coco(images, files.write(payload), None)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b"\xff\xfe\x00\x00",
        b"NaN",
        b'{"images": [], "categories": []}' + b" x",
        b'{"images": [{"id": 1, "file_name": "a.jpg", "width": 1e999}], "categories": []}',
    ],
    ids=["deep-list", "deep-object", "utf32-bom", "nan", "trailing", "inf-width"],
)
def test_coco_pathological_files(images: Path, files: _Files, payload: bytes) -> None:
    _check_coco(images, files.write(payload), None)


# ------------------------------------------------------------------------------------------------------------- VOC
def _voc_object(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from([*VOC_CLASSES[:3], "unicorn", "", " dog "]))
    coords = [
        draw(st.sampled_from(["1", "10", "-5", "1e9", "nan", "inf", "-inf", "x", "", "3.5", "1e400"])) for _ in range(4)
    ]
    tags = ["xmin", "ymin", "xmax", "ymax"]
    kept = [f"<{t}>{c}</{t}>" for t, c in zip(tags, coords) if draw(st.integers(0, 7))]
    difficult = draw(st.sampled_from(["0", "1", "", "yes"]))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{''.join(kept)}</bndbox></object>"


@st.composite
def voc_documents(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from(["100", "0", "-1", "inf", "nan", "1e400", "abc", "", "99999999999999999999"]))
    body = "".join(_voc_object(draw) for _ in range(draw(st.integers(0, 4))))
    prolog = draw(
        st.sampled_from(
            [
                "",
                '<?xml version="1.0"?>',
                '<?xml version="1.0" encoding="bogus"?>',
                '<?xml version="1.0" encoding="utf-16"?>',
                "<!DOCTYPE annotation>",
            ]
        )
    )
    text = f"{prolog}<annotation><size><width>{size}</width><height>80</height></size>{body}</annotation>"
    data = text.encode()
    if draw(st.integers(0, 4)) == 0:  # damage: cut or flip a byte
        position = draw(st.integers(0, len(data) - 1))
        data = (
            data[:position]
            if draw(st.booleans())
            else data[:position] + bytes([data[position] ^ 0x55]) + data[position + 1 :]
        )
    return data


def _check_voc(data: bytes) -> None:
    start = time.perf_counter()
    try:
        annotation = parse_voc_xml(data, "a.xml")
    except BadSample as error:
        assert error.reason and "\n" not in error.reason
    except DatasetError as error:
        assert str(error).startswith("a.xml:") and "not a VOC class" in str(error)
    else:
        if annotation.width is not None:
            assert annotation.width > 0 and annotation.height is not None and annotation.height > 0
        assert all(o.name in VOC_CLASSES for o in annotation.objects)
    assert time.perf_counter() - start < PER_EXAMPLE_SECONDS


@FUZZ
@given(st.binary(max_size=400))
def test_voc_xml_random_bytes(data: bytes) -> None:
    _check_voc(data)


@settings(FUZZ, max_examples=300)
@given(voc_documents())
def test_voc_xml_trees(data: bytes) -> None:
    _check_voc(data)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><object><name>&lol9;</name></object></annotation>"""
HOSTILE_XML = {
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<annotation><object><name>&x;</name></object></annotation>",
    "parameter-entity": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
    b"<annotation/>",
    "quadratic-blowup": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><annotation>'
    + b"&a;" * 5_000
    + b"</annotation>",
}


@pytest.mark.parametrize("name", list(HOSTILE_XML))
def test_entity_expansion_is_refused_quickly(name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(BadSample, match="forbidden constructs"):
        parse_voc_xml(HOSTILE_XML[name], "evil.xml")
    assert time.perf_counter() - start < 1.0


def test_voc_dataset_skips_an_entity_bomb_and_names_it(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(base / "JPEGImages" / "000001.jpg")
    (base / "Annotations" / "000001.xml").write_bytes(BILLION_LAUGHS)
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    dataset = VOCDetection(tmp_path, "trainval")
    with pytest.warns(UserWarning, match="VOC2007/JPEGImages/000001.jpg.*forbidden constructs"):
        assert dataset[0] is None
    assert dataset.report.skipped == [
        {
            "file": "VOC2007/JPEGImages/000001.jpg",
            "reason": "annotation XML uses forbidden constructs (entities or external references)",
        }
    ]
    (base / "ImageSets" / "Main" / "trainval.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="trainval.txt: split file is not text"):
        VOCDetection(tmp_path, "trainval")
