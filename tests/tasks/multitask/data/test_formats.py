"""The joint formats on the miniature real layouts (`tests/fixtures/datasets.py`) and generated shapes: boxes as the
detection readers give them, masks as the segmentation readers give them, the has_boxes / has_mask flags, VOC's
labels in COCO's space, planted defects skipped and counted, and the concatenation keeping sample seeds."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mobilevision.data.labels import VOC_CLASSES, voc_class_of, with_background
from mobilevision.data.report import DataWarning
from mobilevision.data.shapes import CLASSES as SHAPE_CLASSES
from mobilevision.data.shapes import generate_shapes
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import CocoDetection, VOCDetection
from mobilevision.tasks.multitask.data import (
    CocoMultiTask,
    ConcatMultiTask,
    ShapesMultiTask,
    VOCMultiTask,
    eval_transforms,
    train_transforms,
)
from mobilevision.tasks.segmentation.data import COCOSemantic, VOCSegmentation
from mobilevision.tasks.segmentation.masks import VOID, read_index_mask, write_palette_png


def _all(dataset: object) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return [dataset[i] for i in range(len(dataset))]  # type: ignore[index,arg-type]


# -------------------------------------------------------------------------------------------------------------- shapes


def test_shapes_boxes_and_masks_of_the_same_objects(tmp_path: Path) -> None:
    paths = generate_shapes(tmp_path / "s", num_images=5, seed=1, image_size=(64, 80))
    dataset = ShapesMultiTask(paths.root)
    assert dataset.mask_class_names == with_background(SHAPE_CLASSES) == dataset.meta.class_names
    for index, (image, target) in enumerate(_all(dataset)):
        mask = target["mask"]
        assert image.shape == (3, 64, 80) and mask.shape == (64, 80) and mask.dtype == torch.int64
        assert target["has_boxes"] and target["has_mask"] and "orig_mask" not in target
        assert torch.equal(mask, torch.from_numpy(read_index_mask(paths.masks / f"{index:06d}.png").astype(np.int64)))
        # Same objects, same label space: every object pixel of class k lies in a box of class k.
        boxes, labels = target["boxes"].numpy(), target["labels"].numpy()
        for k in np.unique(mask.numpy()):
            if k == 0:
                continue
            ys, xs = np.nonzero(mask.numpy() == k)
            inside = np.zeros(len(xs), bool)
            for x1, y1, x2, y2 in boxes[labels == k]:
                inside |= (xs >= x1 - 1) & (xs < x2 + 1) & (ys >= y1 - 1) & (ys < y2 + 1)
            assert inside.all(), f"image {index}: class {k} pixels outside every box of class {k}"

    evaluation = ShapesMultiTask(paths.root, transforms=eval_transforms(48), with_orig_mask=True)
    image, target = evaluation[2]
    assert image.shape == (3, 48, 48) and target["mask"].shape == (48, 48) and target["orig_size"] == (64, 80)
    assert torch.equal(target["orig_mask"], dataset[2][1]["mask"])


def test_shapes_planted_defects_are_skipped_and_counted(tmp_path: Path) -> None:
    paths = generate_shapes(tmp_path / "s", num_images=4, seed=2, image_size=(40, 48))
    (paths.masks / "000001.png").unlink()
    write_palette_png(paths.masks / "000002.png", np.zeros((40, 40), np.uint8))
    write_palette_png(paths.masks / "000003.png", np.full((40, 48), 9, np.uint8))  # class 9 of 6
    dataset = ShapesMultiTask(paths.root)
    with pytest.warns(DataWarning, match=r"masks/000001\.png: mask file not found"):
        assert dataset[1] is None
    with pytest.warns(DataWarning, match=r"masks/000002\.png: mask is 40x40 \(WxH\) but its image is 48x40"):
        assert dataset[2] is None
    with pytest.warns(DataWarning, match=r"masks/000003\.png: mask labels outside 0\.\.5"):
        assert dataset[3] is None
    _all(dataset)  # a second epoch: counted once
    assert [s["file"] for s in dataset.report.skipped] == ["masks/000001.png", "masks/000002.png", "masks/000003.png"]
    assert dataset.report.images == 4 and dataset[0] is not None

    data = json.loads(paths.annotations.read_text())
    for item in data["categories"] + data["annotations"]:
        item["id" if "name" in item else "category_id"] += 1  # ids 2..6: not mask values any more
    paths.annotations.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"annotations\.json: categories: ids must be 1\.\.K"):
        ShapesMultiTask(paths.root)
    shutil.rmtree(paths.masks)
    with pytest.raises(DatasetError, match="masks: mask folder not found"):
        ShapesMultiTask(paths.root)


# ---------------------------------------------------------------------------------------------------------------- COCO


def test_coco_boxes_over_cocos_classes_and_voc_masks_of_the_same_images(coco2017: tuple) -> None:
    root, expected = coco2017
    images, annotations = root / "train2017", root / "annotations" / "instances_train2017.json"
    dataset = CocoMultiTask(images, annotations)
    assert dataset.meta.num_classes == 81 and dataset.mask_class_names == with_background(VOC_CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        detection, semantic = CocoDetection(images, annotations), COCOSemantic(images, annotations, keep_empty=True)
    masks = {sample_id: sample for sample_id, sample in zip(semantic.ids, _all(semantic))}
    samples = _all(dataset)
    assert sum(s is None for s in samples) == expected["train"].skipped == dataset.report.skipped_images
    assert sum(len(s[1]["labels"]) for s in samples if s) == expected["train"].boxes
    assert dataset.report.extra["crowd"] == expected["train"].crowd
    for sample, reference in zip(samples, _all(detection)):
        if sample is None:
            assert reference is None
            continue
        image, target = sample
        assert torch.equal(image, reference[0]) and torch.equal(target["labels"], reference[1]["labels"])
        assert torch.equal(target["boxes"], reference[1]["boxes"])
        # The mask COCOSemantic renders of the same image: VOC classes, crowd regions void.
        assert target["has_boxes"] and target["has_mask"]
        assert torch.equal(target["mask"], masks[Path(target["file"]).stem][1])
    assert any((s[1]["mask"] == VOID).any() for s in samples if s), "the crowd region is void"


def test_coco_image_outside_voc_classes_or_without_objects_has_no_mask(coco2017: tuple, tmp_path: Path) -> None:
    root, _ = coco2017
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    first, second, third = (image["id"] for image in data["images"][:3])
    for annotation in data["annotations"]:
        if annotation["image_id"] == first:
            annotation["category_id"] = 22  # elephant: a COCO class, not a VOC one
        if annotation["image_id"] == second and annotation["iscrowd"] == 0:
            annotation["segmentation"] = {"counts": [10, 5], "size": [3, 3]}  # an RLE of another size
    background = {**data["images"][2], "id": 999_999}  # an image whose annotation lists no object
    data["images"].append(background)
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(data))
    dataset = CocoMultiTask(root / "val2017", annotation_file, transforms=eval_transforms(64), with_orig_mask=True)

    index = dataset.image_ids.index
    _, target = dataset[index(first)]
    assert target["has_boxes"] and not target["has_mask"] and len(target["labels"]) > 0
    assert {dataset.meta.class_names[int(label)] for label in target["labels"]} == {"elephant"}
    assert (target["mask"] == VOID).all() and (target["orig_mask"] == VOID).all()
    assert target["orig_mask"].shape == target["orig_size"]
    _, target = dataset[index(999_999)]
    assert target["has_boxes"] and target["boxes"].shape == (0, 4) and not target["has_mask"]
    assert dataset.report.extra["images_without_mask"] == 2
    with pytest.warns(DataWarning, match=rf"{second:012d}\.jpg: malformed segmentation"):
        assert dataset[index(second)] is None
    _, target = dataset[index(third)]
    assert target["has_mask"] and target["orig_mask"].shape == target["orig_size"]
    assert set(target["orig_mask"].unique().tolist()) >= {0, VOID}  # background and the crowd of people
    # The EXIF-rotated photo is read in its annotation's frame, so the rendered mask fits it.
    _, target = dataset[len(dataset) - 2]
    assert target["has_mask"] and target["orig_mask"].shape == target["orig_size"]
    assert dataset.report.extra["exif_frame_kept"] == 1


def test_coco_structural_errors_raise_at_construction(coco2017: tuple, tmp_path: Path) -> None:
    root, _ = coco2017
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    data["annotations"][3]["category_id"] = 12  # no category 12 in COCO
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"bad\.json: annotation id \d+: unknown category id 12"):
        CocoMultiTask(root / "val2017", tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------------------------- VOC


def test_voc_masks_where_present_and_labels_in_cocos_space(vocdevkit: tuple, coco2017: tuple) -> None:
    devkit, expected = vocdevkit
    dataset = VOCMultiTask(devkit, "trainval", years=("2012",))
    assert len(dataset) == expected["det/2012/trainval"].images
    segmentation = VOCSegmentation(devkit, "train")
    masks = dict(zip(segmentation.ids, _all(segmentation)))
    samples = _all(dataset)
    flags = {s[1]["file"]: s[1]["has_mask"] for s in samples if s}
    assert flags == {
        "VOC2012/JPEGImages/2007_000032.jpg": True,
        "VOC2012/JPEGImages/2007_000039.jpg": True,
        "VOC2012/JPEGImages/2008_000008.jpg": True,
        "VOC2012/JPEGImages/2008_000015.jpg": False,
    }
    assert dataset.report.skipped_images == expected["det/2012/trainval"].skipped
    for sample in samples:
        if sample and sample[1]["has_mask"]:
            assert torch.equal(sample[1]["mask"], masks[Path(sample[1]["file"]).stem][1])
        elif sample:
            assert (sample[1]["mask"] == VOID).all() and len(sample[1]["labels"]) == 2  # boxes still train

    coco_meta = CocoMultiTask(coco2017[0] / "val2017", coco2017[0] / "annotations" / "instances_val2017.json").meta
    mapped = VOCMultiTask(devkit, "trainval", years=("2012",), meta=coco_meta)
    assert mapped.meta == coco_meta and mapped.mask_class_names == dataset.mask_class_names
    for own, joint in zip(samples, _all(mapped)):
        if own is None:
            continue
        assert torch.equal(own[1]["boxes"], joint[1]["boxes"]) and torch.equal(own[1]["mask"], joint[1]["mask"])
        voc_names = [VOC_CLASSES[int(label) - 1] for label in own[1]["labels"]]
        assert [voc_class_of(coco_meta.class_names[int(label)]) for label in joint[1]["labels"]] == voc_names
    # The ground truth follows: COCO's categories and ids, the same boxes.
    coco_ids = set(coco_meta.category_ids[1:])
    assert {c["id"] for c in mapped.coco.dataset["categories"]} == coco_ids
    assert {a["category_id"] for a in mapped.coco.dataset["annotations"]} <= coco_ids
    assert len(mapped.coco.dataset["annotations"]) == len(VOCDetection(devkit, "trainval", years=("2012",)).coco.anns)


def test_voc_withheld_masks_and_years_without_masks(vocdevkit: tuple) -> None:
    devkit, _ = vocdevkit
    withheld = VOCMultiTask(devkit, "trainval", years=("2012",), withhold_masks="train")
    assert withheld.report.extra["masks_withheld"] == 3
    assert not any(s[1]["has_mask"] for s in _all(withheld) if s)
    voc2007 = VOCMultiTask(devkit, "test", years=("2007",))  # VOC2007 here has no SegmentationClass
    assert voc2007.report.extra["images_without_mask"] == 3 and not any(s[1]["has_mask"] for s in _all(voc2007))
    with pytest.raises(DatasetError, match=r"Segmentation/nosuch\.txt: split list not found"):
        VOCMultiTask(devkit, "trainval", years=("2012",), withhold_masks="nosuch")


def test_voc_planted_mask_defects_and_sbd_masks(vocdevkit: tuple, tmp_path: Path) -> None:
    devkit = tmp_path / "VOCdevkit"
    shutil.copytree(vocdevkit[0] / "VOC2012", devkit / "VOC2012")
    masks = devkit / "VOC2012" / "SegmentationClass"
    (masks / "2007_000039.png").write_bytes(b"not a png")
    write_palette_png(masks / "2008_000008.png", np.zeros((10, 10), np.uint8))
    aug_mask = read_index_mask(masks / "2007_000032.png")  # moved to SegmentationClassAug, as a grey index PNG
    (masks / "2007_000032.png").unlink()
    (devkit / "VOC2012" / "SegmentationClassAug").mkdir()
    Image.fromarray(np.where(aug_mask == VOID, 0, aug_mask).astype(np.uint8), mode="L").save(
        devkit / "VOC2012" / "SegmentationClassAug" / "2007_000032.png"
    )
    sbd_mask = np.zeros((500, 375), np.uint8)
    sbd_mask[100:200, 50:150] = 7
    (tmp_path / "sbd" / "cls").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "sbd" / "cls" / "2008_000015.mat", {"GTcls": {"Segmentation": sbd_mask}})
    dataset = VOCMultiTask(devkit, "trainval", years=("2012",), sbd_root=tmp_path / "sbd")
    with pytest.warns(DataWarning, match=r"VOC2012/SegmentationClass/2007_000039\.png: mask is not a readable"):
        assert dataset[1] is None
    with pytest.warns(DataWarning, match=r"2008_000008\.png: mask is 10x10 \(WxH\) but its image is 640x480"):
        assert dataset[2] is None
    _, target = dataset[0]  # no SegmentationClass mask: SegmentationClassAug's
    assert target["has_mask"] and set(target["mask"].unique().tolist()) == set(np.unique(aug_mask).tolist()) - {VOID}
    _, target = dataset[3]  # no VOC mask: SBD's
    assert target["has_mask"] and torch.equal(target["mask"], torch.from_numpy(sbd_mask.astype(np.int64)))
    _all(dataset)
    assert sorted(s["file"] for s in dataset.report.skipped) == [
        "VOC2012/JPEGImages/2008_999999.jpg",
        "VOC2012/SegmentationClass/2007_000039.png",
        "VOC2012/SegmentationClass/2008_000008.png",
    ]
    with pytest.raises(DatasetError, match="not an SBD folder"):
        VOCMultiTask(devkit, "trainval", years=("2012",), sbd_root=tmp_path)


# -------------------------------------------------------------------------------------------------------------- concat


def test_concat_passes_sample_seeds_on_and_needs_one_label_space(coco2017: tuple, vocdevkit: tuple) -> None:
    root, _ = coco2017
    coco = CocoMultiTask(
        root / "val2017", root / "annotations" / "instances_val2017.json", transforms=train_transforms(64)
    )
    voc = VOCMultiTask(vocdevkit[0], "trainval", years=("2012",), meta=coco.meta, transforms=train_transforms(64))
    joint = ConcatMultiTask([coco, voc])
    assert len(joint) == len(coco) + len(voc) and joint.meta == coco.meta and len(joint.reports) == 2
    for key, part, local in (((len(coco) + 1, 7), voc, (1, 7)), ((2, 3), coco, (2, 3))):
        a, b = joint[key], part[local]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1]["mask"], b[1]["mask"])
        assert torch.equal(a[1]["boxes"], b[1]["boxes"]) and a[1]["file"] == b[1]["file"]
    with pytest.raises(IndexError):
        joint[len(joint)]
    with pytest.raises(ValueError, match="box classes differ"):
        ConcatMultiTask([coco, VOCMultiTask(vocdevkit[0], "trainval", years=("2012",))])
