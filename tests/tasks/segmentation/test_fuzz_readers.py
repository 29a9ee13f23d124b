"""The hostile-input tests of the detection reader, run against the segmentation readers of COCO-format files:
COCO rendered to VOC classes (`COCOSemantic`) and the shapes set (`ShapesSegmentation`). Every file gives a dataset
whose samples keep the sample contract (or are skipped), or one `DatasetError` line naming the file; never another
exception. All three readers share `mobilevision.data.jsonio.load_json`."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data import COCOSemantic, ShapesSegmentation
from tests.tasks.detection.test_fuzz_data import FUZZ, PER_EXAMPLE_SECONDS, _Files, coco_dicts

PATHOLOGICAL = [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b"\xff\xfe\x00\x00",
    b"NaN",
    b'{"images": [], "categories": []}' + b" x",
    b'{"images": [{"id": 1, "file_name": "a.jpg", "width": 1e999}], "categories": []}',
]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reuses the detection fuzz tests' image folder layout: good, grey, undecodable, empty images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("seg_images")
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(root / "a.jpg")
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(root / "b.png")
    (root / "bad.jpg").write_bytes(b"not an image")
    (root / "empty.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> _Files:
    return _Files(tmp_path_factory.mktemp("seg_annotations"))


def _coco_semantic(images: Path, path: Path) -> Any:
    return COCOSemantic(images, path, keep_empty=True)


def _shapes(images: Path, path: Path) -> Any:
    # The shapes layout: images/, masks/, annotations.json in one folder.
    root = path.parent / f"{path.stem}_shapes"
    if not root.exists():
        (root / "masks").mkdir(parents=True)
        shutil.copytree(images, root / "images")
    shutil.copy(path, root / "annotations.json")
    return ShapesSegmentation(root)


READERS: dict[str, Callable[[Path, Path], Any]] = {"coco-semantic": _coco_semantic, "shapes": _shapes}


def _check(reader: str, images: Path, path: Path) -> None:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = READERS[reader](images, path)
        except DatasetError as error:
            message = str(error)
            assert "\n" not in message and ("annotations.json" in message or str(path) in message), message
            return
        for index in range(len(dataset)):
            sample = dataset[index]
            if sample is None:
                continue
            image, mask = sample[0], sample[1]
            assert image.ndim == 3 and image.shape[0] == 3 and mask.shape == image.shape[1:]
            values = set(np.unique(mask.numpy()).tolist())
            assert values <= set(range(dataset.num_classes)) | {255}
    assert time.perf_counter() - start < PER_EXAMPLE_SECONDS


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    "payload", PATHOLOGICAL, ids=["deep-list", "deep-object", "utf32-bom", "nan", "trailing", "inf-width"]
)
def test_pathological_files(reader: str, images: Path, files: _Files, payload: bytes) -> None:
    _check(reader, images, files.write(payload))


@pytest.mark.parametrize("reader", sorted(READERS))
def test_hostile_json(reader: str, images: Path, files: _Files) -> None:
    @FUZZ
    @given(coco_dicts())
    def run(data: Any) -> None:
        _check(reader, images, files.write(json.dumps(data).encode()))

    run()


@pytest.mark.parametrize("reader", sorted(READERS))
def test_random_bytes(reader: str, images: Path, files: _Files) -> None:
    @FUZZ
    @given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
    def run(payload: bytes) -> None:
        _check(reader, images, files.write(payload))

    run()
