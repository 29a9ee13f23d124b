"""Segmentation datasets: VOC defects, train_aug without val leakage, SBD .mat, COCO -> VOC, shapes, augmentation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torch.utils.data import DataLoader

from mobilevision.data.decode import BadSample
from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data import (
    IMAGENET_MEAN_255,
    COCOSemantic,
    ShapesSegmentation,
    VOCSegmentation,
    check_voc_segmentation,
    collate_segmentation,
    eval_transforms,
    open_shapes_segmentation,
    read_sbd_mask,
    render_voc_mask,
    train_transforms,
)
from mobilevision.tasks.segmentation.masks import write_palette_png
from tests.fixtures.datasets import uncompressed_rle

H, W = 10, 12


def _image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_l(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path)


def _mask(seed: int, height: int = H, width: int = W, num_classes: int = 21) -> np.ndarray:
    mask = np.random.default_rng(seed).integers(0, num_classes, (height, width)).astype(np.uint8)
    mask[0, :] = 255  # a void border, as VOC draws around objects
    return mask


def _voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    return voc


def _write_list(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def _add_voc_sample(voc: Path, id_: str, seed: int, *, mask: np.ndarray | None = None) -> np.ndarray:
    _write_jpg(voc / "JPEGImages" / f"{id_}.jpg", _image(seed))
    mask = _mask(seed) if mask is None else mask
    write_palette_png(voc / "SegmentationClass" / f"{id_}.png", mask)
    return mask


@pytest.fixture()
def defect_voc(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A VOC tree with two good samples (palette and single-channel masks) and one of each defect of issue 5."""
    voc = _voc(tmp_path)
    masks = {"good_palette": _add_voc_sample(voc, "good_palette", 1)}
    _write_jpg(voc / "JPEGImages" / "good_grey.jpg", _image(2))
    masks["good_grey"] = _mask(2)
    _write_l(voc / "SegmentationClass" / "good_grey.png", masks["good_grey"])
    write_palette_png(voc / "SegmentationClass" / "no_image.png", _mask(3))  # listed id without an image
    _write_jpg(voc / "JPEGImages" / "no_mask.jpg", _image(4))  # listed id without a mask
    _add_voc_sample(voc, "bad_size", 5, mask=_mask(5, H + 2, W))
    bad = _mask(6)
    bad[3, 3], bad[4, 4] = 21, 40
    _add_voc_sample(voc, "bad_labels", 6, mask=bad)
    _write_jpg(voc / "JPEGImages" / "rgb_mask.jpg", _image(7))
    Image.fromarray(_image(7)).save(voc / "SegmentationClass" / "rgb_mask.png")
    ids = ["good_palette", "no_image", "no_mask", "bad_size", "bad_labels", "rgb_mask", "good_grey"]
    _write_list(voc / "ImageSets" / "Segmentation" / "train.txt", ids)
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
    _voc(tmp_path)
    with pytest.raises(DatasetError, match="val.txt"):
        VOCSegmentation(tmp_path / "VOCdevkit", "val")


def _sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {"GTcls": {"Segmentation": segmentation, "Boundaries": np.zeros((1, 1)), "CategoriesPresent": np.array([1])}},
    )


def test_read_sbd_mask_roundtrip(tmp_path: Path) -> None:
    segmentation = _mask(11).copy()
    segmentation[segmentation == 255] = 0  # SBD has no void label
    _sbd_mat(tmp_path / "a.mat", segmentation)
    out = read_sbd_mask(tmp_path / "a.mat")
    assert out.shape == (H, W) and np.array_equal(out, segmentation)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(BadSample):
        read_sbd_mask(tmp_path / "bad.mat")


def test_train_aug_with_sbd_never_contains_val(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    lists = voc / "ImageSets" / "Segmentation"
    voc_masks = {i: _add_voc_sample(voc, i, s) for s, i in enumerate(["t1", "t2", "v1", "v2"])}
    _write_list(lists / "train.txt", ["t1", "t2"])
    _write_list(lists / "val.txt", ["v1", "v2"])
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    sbd_masks = {}
    for seed, id_ in enumerate(["s1", "s2", "v1", "v2", "t1"], start=20):
        if not (voc / "JPEGImages" / f"{id_}.jpg").exists():
            _write_jpg(voc / "JPEGImages" / f"{id_}.jpg", _image(seed))
        sbd_masks[id_] = np.random.default_rng(seed).integers(0, 21, (H, W)).astype(np.uint8)
        _sbd_mat(sbd / "cls" / f"{id_}.mat", sbd_masks[id_])
    _write_list(sbd / "train.txt", ["s1", "v1"])
    _write_list(sbd / "val.txt", ["s2", "v2", "t1"])

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
    voc = _voc(tmp_path)
    lists = voc / "ImageSets" / "Segmentation"
    for seed, id_ in enumerate(["t1", "v1", "a1"]):
        _write_jpg(voc / "JPEGImages" / f"{id_}.jpg", _image(seed))
        _write_l(voc / "SegmentationClassAug" / f"{id_}.png", _mask(seed))
    _write_list(lists / "train.txt", ["t1"])
    _write_list(lists / "val.txt", ["v1"])
    # The widespread list format: image and mask paths per line; this one wrongly lists a val image.
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ["t1", "a1", "v1"])
    )
    dataset = VOCSegmentation(voc, "train_aug")
    assert dataset.ids == ["t1", "a1"]
    assert dataset.report.extra["val_images_excluded"] == 1
    assert torch.equal(dataset[1][1], torch.from_numpy(_mask(2)).long())


def test_train_aug_without_augmented_set_is_a_clear_error(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    _write_list(voc / "ImageSets" / "Segmentation" / "train.txt", ["a"])
    _write_list(voc / "ImageSets" / "Segmentation" / "val.txt", ["b"])
    with pytest.raises(DatasetError, match="SegmentationClassAug"):
        VOCSegmentation(voc, "train_aug")


# ----- COCO -> VOC


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
        _write_jpg(images / f"{i:06d}.jpg", _image(i, h, w))
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


def test_shapes_segmentation_hand_made_folder(tmp_path: Path) -> None:
    masks = {}
    for i, stem in enumerate(["a", "b"]):
        _write_jpg(tmp_path / "images" / f"{stem}.jpg", _image(i))
    masks["a"] = np.random.default_rng(0).integers(0, 3, (H, W)).astype(np.uint8)
    write_palette_png(tmp_path / "masks" / "a.png", masks["a"])  # b has no mask; c has no image
    (tmp_path / "annotations.json").write_text(
        json.dumps(
            {
                "images": [
                    {"id": i + 1, "file_name": f"{s}.jpg", "height": H, "width": W} for i, s in enumerate("abc")
                ],
                "annotations": [],
                "categories": [{"id": 2, "name": "square"}, {"id": 1, "name": "circle"}],
            }
        )
    )
    with pytest.warns(DataWarning):
        dataset = ShapesSegmentation(tmp_path)
    assert dataset.class_names == ["background", "circle", "square"]
    assert dataset.ids == ["a"]
    assert {item["file"] for item in dataset.report.skipped} == {"masks/b.png", "images/c.jpg"}
    assert torch.equal(dataset[0][1], torch.from_numpy(masks["a"]).long())


def test_shapes_segmentation_reads_the_generator_output(tmp_path: Path) -> None:
    dataset = open_shapes_segmentation(
        tmp_path / "shapes", train_transforms(crop_size=48), num_images=3, seed=0, image_size=(64, 64)
    )  # generated on first use
    assert len(dataset) == 3 and dataset.class_names[0] == "background" and dataset.num_classes == 6
    assert dataset.check().skipped_images == 0
    image, mask = dataset[0]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
    masks = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "shapes" / "masks").iterdir())]
    assert max(int(m.max()) for m in masks) > 0  # shapes are labelled, not all background
    # Picklable, as DataLoader workers need.
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.ids == dataset.ids


# ----- augmentation


COLOUR = np.array([250, 10, 200], np.uint8)


def _rectangle_sample() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((120, 160, 3), 90, np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    image[20:60, 30:90] = COLOUR  # off-centre, so a flip of only one of the two would show
    mask[20:60, 30:90] = 7
    return image, mask


@pytest.mark.parametrize("seed", [0, 1])
def test_train_augmentation_keeps_masks_aligned(seed: int) -> None:
    image, mask = _rectangle_sample()
    transform = train_transforms(crop_size=96, scale=(0.5, 2.0), seed=seed)
    kernel = np.ones((3, 3), np.uint8)
    seen_rectangle = seen_whole = seen_padding = 0
    for _ in range(60):
        out = transform(image=image, mask=mask)
        aug_image, aug_mask = out["image"], out["mask"]
        assert aug_image.shape == (96, 96, 3) and aug_mask.shape == (96, 96)
        assert set(np.unique(aug_mask)) <= {0, 7, 255}  # nearest resampling: no blended labels
        distance = np.abs(aug_image.astype(int) - COLOUR).sum(axis=2)
        painted = (distance < 60).astype(np.uint8)
        labelled = (aug_mask == 7).astype(np.uint8)
        # Equal up to the one pixel that bilinear resampling blends at the rectangle's border (the crop edge counts
        # as a border: a rectangle cut there may end on a blended pixel).
        inner = cv2.erode(labelled, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        assert not (inner & (1 - painted)).any()
        assert not (painted & (1 - cv2.dilate(labelled, kernel))).any()
        inside = labelled.sum() > 0 and not (
            labelled[0].any() or labelled[-1].any() or labelled[:, 0].any() or labelled[:, -1].any()
        )
        # Whole rectangle in the crop: centroids agree to half a pixel (nearest sampling moves an edge by <= 0.5 px).
        if inside:
            seen_whole += 1
            # How much of each pixel is rectangle colour (bilinear blends are linear in it); padding is no blend.
            weight = 1.0 - np.clip(distance / np.abs(COLOUR.astype(int) - 90).sum(), 0, 1)
            weight[aug_mask == 255] = 0
            ys, xs = np.mgrid[:96, :96]
            for grid in (ys, xs):
                assert abs((grid * weight).sum() / weight.sum() - grid[labelled > 0].mean()) <= 0.5 + 1e-6
        seen_rectangle += int(labelled.sum() > 100)
        padding = aug_mask == 255
        if padding.any():
            seen_padding += 1
            assert (aug_image[padding] == IMAGENET_MEAN_255).all()
            assert not (aug_image[~padding] == IMAGENET_MEAN_255).all(axis=1).any()
    assert seen_rectangle > 5 and seen_whole > 0 and seen_padding > 0


def test_dataloader_workers_draw_different_augmentations(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    for i in range(4):
        _add_voc_sample(voc, f"same_{i}", 0, mask=_mask(0))  # four identical samples
    _write_list(voc / "ImageSets" / "Segmentation" / "train.txt", [f"same_{i}" for i in range(4)])
    dataset = VOCSegmentation(voc, "train", train_transforms(crop_size=6, scale=(0.5, 2.0)))
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_segmentation)
    epochs = [[batch[0][0] for batch in loader] for _ in range(2)]
    crops = [crop for epoch in epochs for crop in epoch]
    distinct = {crop.numpy().tobytes() for crop in crops}
    # Without per-worker seeding, worker 0 and 1 replay one stream, and each epoch the same: 2 distinct crops of 8.
    assert len(distinct) >= 6


def test_eval_pad_contract_and_collate() -> None:
    image, mask = _rectangle_sample()
    image, mask = image[:117, :150], mask[:117, :150]
    out = eval_transforms("pad", multiple=16)(image=image, mask=mask)
    assert out["image"].shape == (128, 160, 3)
    assert np.array_equal(out["image"][:117, :150], image) and np.array_equal(out["mask"][:117, :150], mask)
    assert (out["mask"][117:] == 255).all() and (out["mask"][:, 150:] == 255).all()
    assert (out["image"][117:] == IMAGENET_MEAN_255).all()
    assert eval_transforms("pad", size=200, multiple=16)(image=image, mask=mask)["image"].shape == (208, 208, 3)
    resized = eval_transforms("resize", size=(64, 96))(image=image, mask=mask)
    assert resized["image"].shape == (64, 96, 3) and set(np.unique(resized["mask"])) <= {0, 7}
    with pytest.raises(ValueError, match="'crop'"):
        eval_transforms("crop")

    small = (torch.zeros(3, 32, 16, dtype=torch.uint8), torch.ones(32, 16, dtype=torch.int64), (30, 10))
    large = (torch.zeros(3, 48, 32, dtype=torch.uint8), torch.ones(48, 32, dtype=torch.int64), (40, 30))
    images, masks, sizes, orig_sizes = collate_segmentation([small, None, large])
    assert images.shape == (2, 3, 48, 32) and masks.shape == (2, 48, 32)
    assert sizes.tolist() == [[32, 16], [48, 32]]  # each sample's own canvas, before the batch padding
    assert orig_sizes.tolist() == [[30, 10], [40, 30]]
    assert (masks[0, 32:] == 255).all() and (masks[0, :, 16:] == 255).all() and (masks[0, :32, :16] == 1).all()
    assert images[0, :, 40, 20].tolist() == list(IMAGENET_MEAN_255)
    assert collate_segmentation([None, None]) is None
