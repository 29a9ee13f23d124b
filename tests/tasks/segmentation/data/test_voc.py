"""VOC segmentation: defects reported exactly, indices not colours, SBD .mat, train_aug without val leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mobilevision.data.decode import BadSample
from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data import (
    VOCSegmentation,
    check_voc_segmentation,
    collate_segmentation,
    read_sbd_mask,
)
from mobilevision.tasks.segmentation.masks import write_palette_png
from tests.tasks.segmentation.data.samples import (
    H,
    W,
    add_voc_sample,
    image,
    mask_of,
    voc_root,
    write_jpg,
    write_l,
    write_list,
)


@pytest.fixture()
def defect_voc(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A VOC tree with two good samples (palette and single-channel masks) and one of each defect of issue 5."""
    voc = voc_root(tmp_path)
    masks = {"good_palette": add_voc_sample(voc, "good_palette", 1)}
    write_jpg(voc / "JPEGImages" / "good_grey.jpg", image(2))
    masks["good_grey"] = mask_of(2)
    write_l(voc / "SegmentationClass" / "good_grey.png", masks["good_grey"])
    write_palette_png(voc / "SegmentationClass" / "no_image.png", mask_of(3))  # listed id without an image
    write_jpg(voc / "JPEGImages" / "no_mask.jpg", image(4))  # listed id without a mask
    add_voc_sample(voc, "bad_size", 5, mask=mask_of(5, H + 2, W))
    bad = mask_of(6)
    bad[3, 3], bad[4, 4] = 21, 40
    add_voc_sample(voc, "bad_labels", 6, mask=bad)
    write_jpg(voc / "JPEGImages" / "rgb_mask.jpg", image(7))
    Image.fromarray(image(7)).save(voc / "SegmentationClass" / "rgb_mask.png")
    ids = ["good_palette", "no_image", "no_mask", "bad_size", "bad_labels", "rgb_mask", "good_grey"]
    write_list(voc / "ImageSets" / "Segmentation" / "train.txt", ids)
    return tmp_path / "VOCdevkit", masks


def test_check_voc_reports_each_defect_exactly(defect_voc: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = defect_voc
    report = check_voc_segmentation(root, "train")
    data = report.to_dict()
    assert (data["images"], data["usable_images"], data["skipped_images"]) == (7, 2, 5)
    skipped = {item["file"]: item["reason"] for item in data["skipped"]}
    assert set(skipped) == {
        "JPEGImages/no_image.jpg",
        "SegmentationClass/no_mask.png",
        "SegmentationClass/bad_size.png",
        "SegmentationClass/bad_labels.png",
        "SegmentationClass/rgb_mask.png",
    }
    assert "image file not found" in skipped["JPEGImages/no_image.jpg"]
    assert "mask file not found" in skipped["SegmentationClass/no_mask.png"]
    assert "12x12" in skipped["SegmentationClass/bad_size.png"] and "12x10" in skipped["SegmentationClass/bad_size.png"]
    assert "21, 40" in skipped["SegmentationClass/bad_labels.png"]
    assert "colour-coded RGB" in skipped["SegmentationClass/rgb_mask.png"]
    # The VOC2012 folder itself is accepted as the root too, with the same report.
    assert check_voc_segmentation(root / "VOC2012", "train").to_dict() == data


def test_voc_reads_indices_not_colours(defect_voc: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, masks = defect_voc
    with pytest.warns(DataWarning):
        dataset = VOCSegmentation(root, "train", with_orig_size=True)
    assert len(dataset) == 5 and dataset.class_names[0] == "background" and dataset.num_classes == 21
    for id_ in ("good_palette", "good_grey"):
        image, mask, size = dataset[dataset.ids.index(id_)]
        assert image.dtype == torch.uint8 and image.shape == (3, H, W)
        assert mask.dtype == torch.int64 and mask.shape == (H, W)
        assert size == (H, W)
        assert torch.equal(mask, torch.from_numpy(masks[id_]).long())
    with pytest.warns(DataWarning, match="rgb_mask.png"):
        assert dataset[dataset.ids.index("rgb_mask")] is None
    assert dataset.report.skipped_images == 3  # two at construction + the one just decoded
    with pytest.warns(DataWarning):
        batch = collate_segmentation([dataset[i] for i in range(len(dataset))])
    assert batch is not None and batch[0].shape[0] == 2  # only the good samples survive


def test_voc_structural_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="JPEGImages"):
        VOCSegmentation(tmp_path, "train")
    voc_root(tmp_path)
    with pytest.raises(DatasetError, match="val.txt"):
        VOCSegmentation(tmp_path / "VOCdevkit", "val")


def _sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {"GTcls": {"Segmentation": segmentation, "Boundaries": np.zeros((1, 1)), "CategoriesPresent": np.array([1])}},
    )


def test_read_sbd_mask_roundtrip(tmp_path: Path) -> None:
    segmentation = mask_of(11).copy()
    segmentation[segmentation == 255] = 0  # SBD has no void label
    _sbd_mat(tmp_path / "a.mat", segmentation)
    out = read_sbd_mask(tmp_path / "a.mat")
    assert out.shape == (H, W) and np.array_equal(out, segmentation)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(BadSample):
        read_sbd_mask(tmp_path / "bad.mat")


def test_train_aug_with_sbd_never_contains_val(tmp_path: Path) -> None:
    voc = voc_root(tmp_path)
    lists = voc / "ImageSets" / "Segmentation"
    voc_masks = {i: add_voc_sample(voc, i, s) for s, i in enumerate(["t1", "t2", "v1", "v2"])}
    write_list(lists / "train.txt", ["t1", "t2"])
    write_list(lists / "val.txt", ["v1", "v2"])
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    sbd_masks = {}
    for seed, id_ in enumerate(["s1", "s2", "v1", "v2", "t1"], start=20):
        if not (voc / "JPEGImages" / f"{id_}.jpg").exists():
            write_jpg(voc / "JPEGImages" / f"{id_}.jpg", image(seed))
        sbd_masks[id_] = np.random.default_rng(seed).integers(0, 21, (H, W)).astype(np.uint8)
        _sbd_mat(sbd / "cls" / f"{id_}.mat", sbd_masks[id_])
    write_list(sbd / "train.txt", ["s1", "v1"])
    write_list(sbd / "val.txt", ["s2", "v2", "t1"])

    dataset = VOCSegmentation(tmp_path / "VOCdevkit", "train_aug")  # SBD found next to VOCdevkit
    val = {"v1", "v2"}
    assert set(dataset.ids) == {"t1", "t2", "s1", "s2"}
    assert not val & set(dataset.ids)
    assert not any(sample.image.stem in val or sample.mask.stem in val for sample in dataset.samples)
    assert dataset.report.extra["val_images_excluded"] == 2
    # VOC's own mask wins where it exists (t1); SBD's .mat is read for the others.
    assert torch.equal(dataset[dataset.ids.index("t1")][1], torch.from_numpy(voc_masks["t1"]).long())
    assert torch.equal(dataset[dataset.ids.index("s2")][1], torch.from_numpy(sbd_masks["s2"]).long())
    # An explicit sbd_root (the benchmark_RELEASE folder) gives the same set.
    explicit = VOCSegmentation(voc, "train_aug", sbd_root=tmp_path / "benchmark_RELEASE")
    assert explicit.ids == dataset.ids


def test_train_aug_segmentation_class_aug_layout(tmp_path: Path) -> None:
    voc = voc_root(tmp_path)
    lists = voc / "ImageSets" / "Segmentation"
    for seed, id_ in enumerate(["t1", "v1", "a1"]):
        write_jpg(voc / "JPEGImages" / f"{id_}.jpg", image(seed))
        write_l(voc / "SegmentationClassAug" / f"{id_}.png", mask_of(seed))
    write_list(lists / "train.txt", ["t1"])
    write_list(lists / "val.txt", ["v1"])
    # The widespread list format: image and mask paths per line; this one wrongly lists a val image.
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ["t1", "a1", "v1"])
    )
    dataset = VOCSegmentation(voc, "train_aug")
    assert dataset.ids == ["t1", "a1"]
    assert dataset.report.extra["val_images_excluded"] == 1
    assert torch.equal(dataset[1][1], torch.from_numpy(mask_of(2)).long())


def test_train_aug_without_augmented_set_is_a_clear_error(tmp_path: Path) -> None:
    voc = voc_root(tmp_path)
    write_list(voc / "ImageSets" / "Segmentation" / "train.txt", ["a"])
    write_list(voc / "ImageSets" / "Segmentation" / "val.txt", ["b"])
    with pytest.raises(DatasetError, match="SegmentationClassAug"):
        VOCSegmentation(voc, "train_aug")


# ----- COCO -> VOC
