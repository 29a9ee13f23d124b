"""The joint reading path's shared parts: transforms that keep boxes, masks and pixels together, the label mapping,
the concatenation that keeps sample seeds, and the collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.data.labels import COCO_TO_VOC, VOC_CLASSES
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import DetectionMeta
from mobilevision.tasks.multitask.data import collate_multitask, eval_transforms, label_mapping, train_transforms
from mobilevision.tasks.segmentation.masks import VOID
from tests.fixtures.datasets import COCO_CATEGORIES

COLOURS = {1: (230, 30, 30), 2: (30, 220, 40), 3: (40, 60, 230), 4: (230, 220, 30)}


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A grey image of random size with up to four non-overlapping rectangles of distinct colours; the mask holds
    each rectangle's instance id (its label here), 0 elsewhere; boxes are the rectangles exactly."""
    height, width = (int(v) for v in rng.integers(120, 260, size=2))
    image = np.full((height, width, 3), 128, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    boxes, labels = [], []
    for label, colour in COLOURS.items():
        for _ in range(20):  # a free spot, or give up on this one
            w, h = (int(v) for v in rng.integers(8, max(9, min(height, width) // 2), size=2))
            x1, y1 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if not mask[max(0, y1 - 2) : y1 + h + 2, max(0, x1 - 2) : x1 + w + 2].any():
                image[y1 : y1 + h, x1 : x1 + w] = colour
                mask[y1 : y1 + h, x1 : x1 + w] = label
                boxes.append((x1, y1, x1 + w, y1 + h))
                labels.append(label)
                break
    return image, mask, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def test_train_transforms_keep_every_box_tight_on_its_mask_and_its_pixels() -> None:
    """Over many seeds of the full SSD augmentation (zoom out, IoU crop, flip, resize): every kept box is the tight
    box of its object's mask pixels (within the pixel a nearest-exact resize may move an edge), the image under the
    mask has the object's colour, mask pixels outside every kept box are background, void (zoom-out canvas) or an
    object the crop dropped (centre outside it: no detection target, still a right mask), and the mask is never
    blended (only labels that were there, plus void)."""
    size = 96
    seen = {"void": 0, "dropped": 0, "cropped": 0}
    for seed in range(120):
        image, mask, boxes, labels = _scene(np.random.default_rng(seed))
        out = train_transforms(size, photometric=False, seed=seed)(image=image, bboxes=boxes, labels=labels, mask=mask)
        result, result_mask = out["image"], out["mask"]
        out_boxes = np.asarray(out["bboxes"], np.float64).reshape(-1, 4)
        out_labels = np.asarray(out["labels"]).astype(int).tolist()
        assert result.shape == (size, size, 3) and result_mask.shape == (size, size)
        assert set(np.unique(result_mask).tolist()) <= {0, VOID, *labels.tolist()}, "mask labels were blended"
        covered = np.zeros((size, size), bool)
        for box, label in zip(out_boxes, out_labels):
            ys, xs = np.nonzero(result_mask == label)
            assert ys.size, f"seed {seed}: box {box} of object {label} has no mask pixel"
            tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            np.testing.assert_allclose(tight, box, atol=0.51, err_msg=f"seed {seed}, object {label}")
            x1, y1, x2, y2 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
            covered[y1:y2, x1:x2] = True
            # The pixels follow: the object's interior (one pixel in from its mask edge) has its colour.
            inner = result_mask == label
            inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
            inner[[0, -1], :] = inner[:, [0, -1]] = False
            if inner.any():
                error = np.abs(result[inner].astype(int) - COLOURS[label]).max(1)
                assert np.median(error) < 30, f"seed {seed}: object {label}'s pixels moved off its mask"
        dropped = set(labels.tolist()) - set(out_labels)
        outside = set(np.unique(result_mask[~covered]).tolist()) - {0, VOID}
        assert outside <= dropped, f"seed {seed}: objects {outside - dropped} have mask pixels outside their box"
        seen["void"] += bool((result_mask == VOID).any())
        seen["dropped"] += bool(dropped)
        seen["cropped"] += bool(outside)
    # The seeds exercised each step: zoom-out canvases (void), crops that dropped objects and left their pixels.
    assert seen["void"] >= 20 and seen["dropped"] >= 5 and seen["cropped"] >= 1, seen


def test_zoom_out_canvas_is_void_in_the_mask_and_mean_in_the_image() -> None:
    image, mask, boxes, labels = _scene(np.random.default_rng(0))
    transform = train_transforms(96, photometric=False, min_iou_crop=False, hflip=False)
    for seed in range(30):
        transform.set_random_seed(seed)
        out = transform(image=image, bboxes=boxes, labels=labels, mask=mask)
        void = out["mask"] == VOID
        if void.sum() > 200:
            # Away from the image's edge (the area resize blends it), the void canvas is the mean fill.
            assert np.median(np.abs(out["image"][void].astype(int) - (124, 116, 104)).max(1)) <= 2
            return
    pytest.fail("no seed zoomed out")


def test_eval_transforms_resize_image_boxes_and_mask_together() -> None:
    image, mask, boxes, labels = _scene(np.random.default_rng(3))
    height, width = mask.shape
    out = eval_transforms(64)(image=image, bboxes=boxes, labels=labels, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
    np.testing.assert_allclose(np.asarray(out["bboxes"]), boxes * np.array([64 / width, 64 / height] * 2), atol=1e-3)
    assert set(np.unique(out["mask"]).tolist()) <= {0, *labels.tolist()}  # nearest: nothing blended, no void


def test_same_seed_same_augmentation_of_image_boxes_and_mask() -> None:
    image, mask, boxes, labels = _scene(np.random.default_rng(5))
    transform = train_transforms(64)
    runs = []
    for seed in (11, 11, 12):
        transform.set_random_seed(seed)
        runs.append(transform(image=image, bboxes=boxes, labels=labels, mask=mask))
    assert np.array_equal(runs[0]["image"], runs[1]["image"]) and np.array_equal(runs[0]["mask"], runs[1]["mask"])
    assert np.array_equal(np.asarray(runs[0]["bboxes"]), np.asarray(runs[1]["bboxes"]))
    assert not np.array_equal(runs[0]["image"], runs[2]["image"])


def _coco_meta() -> DetectionMeta:
    return DetectionMeta.from_categories([{"id": cid, "name": name} for cid, name, _ in COCO_CATEGORIES])


def test_label_mapping_takes_voc_labels_into_cocos_by_class() -> None:
    voc = DetectionMeta(["background", *VOC_CLASSES], list(range(21)))
    coco = _coco_meta()
    lut = label_mapping(voc, coco)
    assert lut.shape == (21,) and lut[0] == 0
    for label, name in enumerate(VOC_CLASSES, start=1):
        coco_name = coco.class_names[lut[label]]
        assert coco_name == name or COCO_TO_VOC[coco_name] == name
    assert coco.class_names[lut[VOC_CLASSES.index("aeroplane") + 1]] == "airplane"
    assert coco.class_names[lut[VOC_CLASSES.index("tvmonitor") + 1]] == "tv"
    # COCO into VOC: the 60 other categories have no counterpart, named in the error.
    with pytest.raises(DatasetError, match="truck"):
        label_mapping(coco, voc)


def _sample(size: tuple[int, int], mask_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
    mask = torch.zeros(mask_size or size, dtype=torch.int64)
    return torch.zeros((3, *size), dtype=torch.uint8), {"file": "a.jpg", "mask": mask, "boxes": torch.zeros(0, 4)}


def test_collate_drops_skipped_samples_and_checks_mask_sizes() -> None:
    images, targets = collate_multitask([_sample((8, 8)), None, _sample((8, 8))])
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.uint8 and len(targets) == 2
    images, targets = collate_multitask([None, None])
    assert images.shape == (0, 3, 0, 0) and targets == []
    with pytest.raises(ValueError, match=r"a\.jpg: mask \(8, 6\)"):
        collate_multitask([_sample((8, 8), (8, 6))])
    with pytest.raises(ValueError, match="share a size"):
        collate_multitask([_sample((8, 8)), _sample((8, 6))])
