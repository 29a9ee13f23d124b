"""Hostile classes files and colour / index masks for `FolderSegmentation`: a dataset whose samples keep the mask
contract, or one `DatasetError`, never another exception. Fixed example counts, `derandomize=True`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data.folder import FolderSegmentation, read_classes_file

FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
FIELDS = st.sampled_from(["bg", "road", "bg", "0", "255", "256", "-1", "x", "12", "#", "1.5", ""])
LINE = st.lists(FIELDS, max_size=5).map(" ".join)


@FUZZ
@given(text=st.lists(LINE, max_size=5).map("\n".join))
def test_classes_file_or_dataset_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cls") / "classes.txt"
    path.write_text(text)
    try:
        names, colors = read_classes_file(path)
    except DatasetError:
        return
    assert names and len(set(names)) == len(names)
    assert colors is None or (len(colors) == len(names) and all(0 <= v <= 255 for c in colors for v in c))


@FUZZ
@given(
    values=st.lists(st.sampled_from([0, 1, 2, 7, 200, 255]), min_size=12, max_size=12),
    colour=st.booleans(),
    mode=st.sampled_from(["auto", "index", "binary", "rgb"]),
    names=st.sampled_from([None, ["a", "b"], ["a", "b", "c"], []]),
    colors=st.sampled_from([None, [[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [200, 200, 200], [7, 7, 7]]]),
)
def test_folder_dataset_or_dataset_error(tmp_path_factory: pytest.TempPathFactory, values, colour, mode, names, colors):
    root: Path = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    mask = np.array(values, np.uint8).reshape(3, 4)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "images" / "a.jpg")
    Image.fromarray(np.stack([mask] * 3, -1) if colour else mask).save(root / "masks" / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            dataset = FolderSegmentation(root / "images", root / "masks", names=names, colors=colors, mask_mode=mode)
        except DatasetError:
            return
        sample = dataset[0]
    if sample is not None:
        image, labels = sample
        assert image.shape == (3, 3, 4) and labels.shape == (3, 4)
        ok = (labels < dataset.num_classes) | (labels == 255)
        assert bool(ok.all())
