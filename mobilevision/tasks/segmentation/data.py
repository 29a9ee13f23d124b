"""Segmentation datasets (PASCAL VOC 2012, VOC train_aug with SBD, COCO rendered to VOC classes, synthetic shapes),
their albumentations pipelines and the collate function.

Sample contract (every dataset here):
    `dataset[i]` -> `(image, mask)` with image uint8 [3, H, W] (RGB, not normalised: the model normalises) and mask
    int64 [H, W] of class indices, 255 = void; or `None` for a bad sample, after a `DataWarning` naming the file.
    With `with_orig_size=True` it is `(image, mask, (h, w))` where (h, w) is the size of the decoded image before the
    transform. `dataset.ids[i]` is the sample's id (VOC id, file stem), e.g. to name a prediction PNG.

Evaluation padding contract:
    `eval_transforms(mode="pad")` pads only at the bottom and the right (the image keeps its top-left corner), the
    image with the ImageNet mean and the mask with 255. So:
    - metrics need no cropping: padded pixels are void in the mask and ignored by the metric;
    - to write or show a prediction at the original size, crop the logits or labels to `[..., :h, :w]` with
      (h, w) from `with_orig_size=True` (for a batch, `collate_segmentation` returns them as int64 [B, 2]).
    `eval_transforms(mode="resize")` resizes image (bilinear) and mask (nearest) to a fixed size; upsample the logits
    to (h, w) to get a prediction at the original size. The mIoU of the VOC protocol is the one of "pad" mode.

Defects: missing files are found at construction (skipped, named in `dataset.report` and not in `len(dataset)`);
defects that need decoding (unreadable image or mask, mask size differs from the image, labels outside 0..C-1 and
255, a colour-coded RGB mask) are found in `__getitem__` (or all at once by `dataset.check()`). A structural problem
(wrong folder layout, missing split list, malformed JSON) raises `DatasetError` at construction. Note that in
DataLoader worker processes each worker records skips in its own copy of `report`; `check()` gives the full report.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import scipy.io
import torch
from pycocotools import mask as coco_mask
from torch.utils.data import Dataset

from mobilevision.data.decode import BadSample, read_image_in_frame, resolve_inside
from mobilevision.data.jsonio import load_json
from mobilevision.data.labels import COCO_TO_VOC, VOC_CLASSES, with_background
from mobilevision.data.report import DataWarning, DefectReport
from mobilevision.data.splits import read_id_list
from mobilevision.data.seeding import SampleKey, TransformSeeder
from mobilevision.errors import DatasetError
from mobilevision.transforms import IMAGENET_MEAN
from mobilevision.tasks.segmentation.masks import VOID, check_labels, read_index_mask

# The ImageNet mean in 0..255, rounded ((124, 116, 104)): what padding adds to a uint8 image, so that after the
# model's normalisation the padded pixels are (nearly) zero, as in the TF DeepLab reference.
IMAGENET_MEAN_255: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # type: ignore[assignment]

# A transform takes and returns albumentations-style keywords: image (H, W, 3) uint8, mask (H, W) uint8.
Transform = Callable[..., dict[str, Any]]
Sample = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, tuple[int, int]]


class _Defect(Exception):
    """One sample is unusable: `file` is the offending file (image or mask), `reason` says why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class _Sample:
    id: str
    image: Path
    mask: Path | None  # an index PNG or an SBD .mat; None when the mask is rendered (COCO)
    coco_id: int | None = None


class _SegmentationDataset(Dataset):
    """Shared sample loading, defect recording and tensor conversion. Subclasses fill `samples` and `class_names`."""

    def __init__(self, *, root: Path, transform: Transform | None, with_orig_size: bool) -> None:
        self.root = root
        self.transform = transform
        self.with_orig_size = with_orig_size
        self.class_names: list[str] = []
        self.report = DefectReport()
        self.samples: list[_Sample] = []
        self._failed: set[int] = set()
        self._frame_kept: set[int] = set()
        self._seeder = TransformSeeder()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ids(self) -> list[str]:
        """The id of each usable sample, aligned with indices (VOC id, or the image file stem)."""
        return [sample.id for sample in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, path: Path) -> str:
        """How a file is named in the report: relative to the dataset root when inside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _read_mask(self, sample: _Sample, image: np.ndarray | None) -> np.ndarray:
        """The sample's mask; file masks need no image (`image` is None), rendered ones (COCO) are drawn for it."""
        assert sample.mask is not None
        try:
            if sample.mask.suffix == ".mat":
                return read_sbd_mask(sample.mask)
            return read_index_mask(sample.mask)
        except BadSample as error:
            raise _Defect(self._name(sample.mask), error.reason) from None

    def _stated_size(self, sample: _Sample) -> tuple[int, int] | None:
        """(width, height) the annotation file gives for a sample whose mask is rendered (no mask file)."""
        return None

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode and check sample `index`: image (H, W, 3) uint8 RGB and mask (H, W) uint8 before any transform.

        The image is read in the mask's frame: an EXIF orientation that would turn it away from its mask's size is
        left unapplied (counted as `exif_frame_kept`), since the mask was drawn on the stored pixels.

        Raises:
            _Defect: naming the offending file and the reason.
        """
        sample = self.samples[index]
        mask = self._read_mask(sample, None) if sample.mask is not None else None
        stated = (mask.shape[1], mask.shape[0]) if mask is not None else self._stated_size(sample)
        try:
            image, frame_kept = read_image_in_frame(sample.image, stated)
        except BadSample as error:
            raise _Defect(self._name(sample.image), error.reason) from None
        if frame_kept and index not in self._frame_kept:
            self._frame_kept.add(index)
            self.report.count("exif_frame_kept")
        if mask is None:
            mask = self._read_mask(sample, image)
        mask_file = self._name(sample.mask) if sample.mask is not None else self._name(sample.image)
        if mask.shape != image.shape[:2]:
            (mh, mw), (ih, iw) = mask.shape[:2], image.shape[:2]
            raise _Defect(mask_file, f"mask is {mw}x{mh} (WxH) but its image is {iw}x{ih}")
        try:
            mask = check_labels(mask, self.num_classes)
        except BadSample as error:
            raise _Defect(mask_file, error.reason) from None
        return image, mask

    def _record(self, index: int, defect: _Defect) -> None:
        if index in self._failed:  # already counted (a later epoch): warn only
            warnings.warn(f"skipping {defect.file}: {defect.reason}", DataWarning, stacklevel=3)
            return
        self._failed.add(index)
        self.report.skip(defect.file, defect.reason)

    def __getitem__(self, key: SampleKey) -> Sample | None:
        """`key` is an index, or `(index, seed)` from a training sampler to seed this sample's augmentation."""
        index = self._seeder(self.transform, key)
        try:
            image, mask = self.load(index)
        except _Defect as defect:
            self._record(index, defect)
            return None
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask_t = torch.from_numpy(mask.astype(np.int64))  # a writable copy (decoded masks are read-only views)
        if self.with_orig_size:
            return image_t, mask_t, orig_size
        return image_t, mask_t

    def check(self) -> DefectReport:
        """Decode every sample (no transform) and return the full report: construction-time and decoding defects."""
        for index in range(len(self)):
            try:
                self.load(index)
            except _Defect as defect:
                self._record(index, defect)
        return self.report

    def _skip_at_construction(self, path: Path, reason: str) -> None:
        self.report.skip(self._name(path), reason)


# ---------------------------------------------------------------------------------------------------------------------
# PASCAL VOC 2012 and the augmented training set (SBD / SegmentationClassAug)


def _resolve_voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(
        f"{root}: not a PASCAL VOC 2012 folder: expected {root / 'JPEGImages'} (root = VOCdevkit/VOC2012) or "
        f"{root / 'VOC2012' / 'JPEGImages'} (root = VOCdevkit); neither exists"
    )


def check_voc_layout(root: str | os.PathLike[str], split: str) -> Path:
    """Check, without reading any image, that `root` is a VOC 2012 folder with masks and the list for `split`.

    DataModules call it at construction so a wrong root is one message before any model is built; returns the
    VOC2012 folder. `train_aug` needs more (SBD); `VOCSegmentation` checks that when it reads the lists.
    """
    if not root:
        raise DatasetError("the VOC root is empty; set --data.init_args.root to a VOCdevkit or VOC2012 folder")
    voc = _resolve_voc_root(Path(root))
    if split != "train_aug":
        if not (voc / "SegmentationClass").is_dir():
            raise DatasetError(f"{voc / 'SegmentationClass'}: mask folder not found (VOCdevkit/VOC2012 layout)")
        if not (voc / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
            raise DatasetError(f"{voc / 'ImageSets' / 'Segmentation' / f'{split}.txt'}: split list not found")
    return voc


def _voc_images(voc: Path, id_: str) -> list[Path]:
    """Where the image of `id_` may be: VOC's .jpg first; .jpeg/.png too, for hand-made sets in the same layout."""
    return [voc / "JPEGImages" / f"{id_}{suffix}" for suffix in (".jpg", ".jpeg", ".png")]


def _resolve_sbd_root(path: Path) -> Path | None:
    """The SBD `dataset` folder (holding `cls/`) for `path` = benchmark_RELEASE or benchmark_RELEASE/dataset."""
    for candidate in (path, path / "dataset"):
        if (candidate / "cls").is_dir():
            return candidate
    return None


def read_sbd_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an SBD `cls/*.mat` file's `GTcls.Segmentation` as an (H, W) array of class indices.

    Raises:
        BadSample: unreadable file, no GTcls struct, or a Segmentation field that is not a 2-D array.
    """
    if not Path(path).is_file():
        raise BadSample("mask file not found")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception:  # noqa: BLE001 - scipy raises many types for a corrupt or HDF5 (v7.3) file
        raise BadSample("cannot read .mat file (corrupt, or not a MATLAB v5 file)") from None
    gt = mat.get("GTcls")
    segmentation = getattr(gt, "Segmentation", None)
    if segmentation is None:
        raise BadSample("no GTcls.Segmentation in .mat file")
    array = np.asarray(segmentation)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise BadSample(f"GTcls.Segmentation is not a 2-D integer array (shape {array.shape}, {array.dtype})")
    return array


class VOCSegmentation(_SegmentationDataset):
    """PASCAL VOC 2012 segmentation: `JPEGImages/*.jpg`, `SegmentationClass/*.png`, `ImageSets/Segmentation/S.txt`.

    Args:
        root: the `VOCdevkit/VOC2012` folder, or the `VOCdevkit` folder holding it.
        split: a list in `ImageSets/Segmentation` (`train`, `val`, `trainval`, ...) or `train_aug`: VOC train plus
            the augmented set (SBD train+val, or the `SegmentationClassAug` PNGs listed by `train_aug.txt`), minus
            every VOC val image. VOC's own mask is used when an id has one, the augmented mask otherwise.
        transform: albumentations-style callable (`train_transforms()`, `eval_transforms()`), or None.
        num_classes: C; mask labels must be 0..C-1 or 255.
        sbd_root: `benchmark_RELEASE` (or its `dataset` folder) for `train_aug`. When None, `SegmentationClassAug` +
            `train_aug.txt` is used if present, else a `benchmark_RELEASE` next to VOCdevkit, VOCdevkit or VOC2012.
        with_orig_size: return `(image, mask, (h, w))`; see the module docstring.
    """

    AUG_LISTS = ("ImageSets/Segmentation/train_aug.txt", "ImageSets/Segmentation/trainaug.txt",
                 "ImageSets/Segmentation/aug.txt", "train_aug.txt", "SegmentationClassAug/train_aug.txt")  # fmt: skip

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Transform | None = None,
        *,
        num_classes: int = 21,
        sbd_root: str | os.PathLike[str] | None = None,
        with_orig_size: bool = False,
    ) -> None:
        if num_classes < 2 or num_classes > 255:
            raise ValueError(f"num_classes must be in 2..255 (255 is void), got {num_classes}")
        voc = _resolve_voc_root(Path(root))
        super().__init__(root=voc, transform=transform, with_orig_size=with_orig_size)
        self.split = split
        voc_names = with_background(VOC_CLASSES)
        self.class_names = voc_names[:num_classes] + [f"class_{i}" for i in range(len(voc_names), num_classes)]
        lists = voc / "ImageSets" / "Segmentation"
        if split == "train_aug":
            entries = self._train_aug_entries(voc, Path(sbd_root) if sbd_root is not None else None)
        else:
            if not (voc / "SegmentationClass").is_dir():
                raise DatasetError(f"{voc / 'SegmentationClass'}: mask folder not found (VOCdevkit/VOC2012 layout)")
            ids = read_id_list(lists / f"{split}.txt")
            entries = [(i, _voc_images(voc, i), [voc / "SegmentationClass" / f"{i}.png"]) for i in ids]
        self._add_entries(entries, list_name=split if split == "train_aug" else f"ImageSets/Segmentation/{split}.txt")

    def _add_entries(self, entries: Iterable[tuple[str, list[Path], list[Path]]], *, list_name: str) -> None:
        """Keep entries whose image and mask exist (first existing candidate of each); skip and name the others."""
        for id_, images, masks in entries:
            self.report.images += 1
            try:
                resolve_inside(self.root / "JPEGImages", f"{id_}.jpg")  # an id like ../../x must not leave the root
            except BadSample as error:
                self.report.skip(id_, f"invalid id in {list_name}: {error.reason}")
                continue
            image = next((p for p in images if p.is_file()), None)
            if image is None:
                self._skip_at_construction(images[0], f"image file not found (id listed in {list_name})")
                continue
            mask = next((p for p in masks if p.is_file()), None)
            if mask is None:
                self._skip_at_construction(masks[0], f"mask file not found (id listed in {list_name})")
                continue
            self.samples.append(_Sample(id=id_, image=image, mask=mask))

    def _train_aug_entries(self, voc: Path, sbd_root: Path | None) -> list[tuple[str, list[Path], list[Path]]]:
        lists = voc / "ImageSets" / "Segmentation"
        train_ids = read_id_list(lists / "train.txt")
        val_ids = set(read_id_list(lists / "val.txt"))  # required: without it we cannot prove val stays out
        own_masks = voc / "SegmentationClass"

        aug_list = next((voc / p for p in self.AUG_LISTS if (voc / p).is_file()), None)
        sbd: Path | None = None
        if sbd_root is not None:
            sbd = _resolve_sbd_root(sbd_root)
            if sbd is None:
                raise DatasetError(f"{sbd_root}: not an SBD folder: expected {sbd_root / 'dataset' / 'cls'} or "
                                   f"{sbd_root / 'cls'} (benchmark_RELEASE layout)")
        elif aug_list is None or not (voc / "SegmentationClassAug").is_dir():
            for base in (voc.parent.parent, voc.parent, voc):
                sbd = _resolve_sbd_root(base / "benchmark_RELEASE")
                if sbd is not None:
                    break
            if sbd is None:
                raise DatasetError(
                    f"{voc}: train_aug needs SBD or SegmentationClassAug: expected {voc / 'SegmentationClassAug'} "
                    f"with {voc / self.AUG_LISTS[0]}, or benchmark_RELEASE/dataset/cls next to VOCdevkit "
                    "(or pass sbd_root)"
                )

        aug_ids: list[str] = []
        if sbd is not None:
            found = [sbd / name for name in ("train.txt", "val.txt") if (sbd / name).is_file()]
            if not found:
                raise DatasetError(f"{sbd}: SBD split lists train.txt and val.txt not found")
            for path in found:
                aug_ids += read_id_list(path)
            aug_mask_dir, aug_mask_suffix, extra_images = sbd / "cls", ".mat", [sbd / "img"]
        else:
            assert aug_list is not None
            aug_ids = read_id_list(aug_list)
            aug_mask_dir, aug_mask_suffix, extra_images = voc / "SegmentationClassAug", ".png", []

        entries: dict[str, tuple[str, list[Path], list[Path]]] = {}
        excluded = 0
        for id_ in [*train_ids, *aug_ids]:
            if id_ in val_ids:
                excluded += 1  # VOC val is the evaluation set: never train on it, whatever the aug list says
                continue
            if id_ not in entries:
                images = [*_voc_images(voc, id_), *(folder / f"{id_}.jpg" for folder in extra_images)]
                masks = [own_masks / f"{id_}.png", aug_mask_dir / f"{id_}{aug_mask_suffix}"]
                entries[id_] = (id_, images, masks)
        if excluded:
            self.report.count("val_images_excluded", excluded)
        return list(entries.values())


def check_voc_segmentation(root: Path, split: str, *, num_classes: int = 21) -> DefectReport:
    """Read every sample of a VOC split through `VOCSegmentation` (the training code path) and return the report.

    Warnings are silenced: the report lists every skipped file and reason. Used by `mobilevision data check
    --format voc-seg`. Raises `DatasetError` for a structural problem (layout, missing split list).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VOCSegmentation(root, split, num_classes=num_classes)
        return dataset.check()


# ---------------------------------------------------------------------------------------------------------------------
# COCO rendered to the 20 VOC classes


def _segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) to a bool (H, W) mask; None if empty.

    Raises:
        ValueError: a malformed segmentation.
    """
    if isinstance(segmentation, list):
        # Polygons with fewer than 3 points cover no area; pycocotools would fail on them.
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return None
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from the image's {[height, width]}")
        if isinstance(segmentation["counts"], list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError("segmentation is neither a polygon list nor an RLE dict")
    return coco_mask.decode(rle).astype(bool)


def render_voc_mask(annotations: Sequence[dict[str, Any]], height: int, width: int,
                    category_to_class: dict[int, int]) -> np.ndarray:
    """Render COCO instance annotations of one image to an (H, W) uint8 VOC semantic mask.

    Rules (deliberate choices):
    - categories not in `category_to_class` (non-VOC) stay background (0);
    - a crowd region (`iscrowd=1`) of a VOC class is void (255): it mixes instances and background, so any label
      would be wrong somewhere; crowd regions of other categories stay background;
    - overlapping instances: painted from the largest area to the smallest, so the smaller instance wins, since in
      photographs a smaller region overlapping a larger one is usually in front of it (a person on a sofa, a bottle
      on a table); instances are painted after crowd regions, so a delineated instance is never void.

    Raises:
        ValueError: a malformed segmentation (the caller names the file and annotation).
    """
    mask = np.zeros((height, width), np.uint8)
    instances: list[tuple[int, int, np.ndarray]] = []
    for annotation in annotations:
        label = category_to_class.get(annotation["category_id"])
        if label is None:
            continue
        binary = _segmentation_to_mask(annotation.get("segmentation"), height, width)
        if binary is None:
            continue
        if annotation.get("iscrowd", 0):
            mask[binary] = VOID
        else:
            instances.append((int(binary.sum()), label, binary))
    for _, label, binary in sorted(instances, key=lambda item: -item[0]):
        mask[binary] = label
    return mask


class COCOSemantic(_SegmentationDataset):
    """COCO instances rendered to VOC semantic masks (21 classes, see `render_voc_mask`), for pre-training on VOC.

    Args:
        images_dir: the folder holding the images (e.g. `train2017`).
        annotation_file: a COCO instances JSON (e.g. `annotations/instances_train2017.json`).
        transform: albumentations-style callable, or None.
        keep_empty: keep images with no VOC-class annotation (all background). Dropped by default, as in the
            DeepLab COCO pre-training; their number is `report.extra["images_without_voc_classes"]`.
        with_orig_size: return `(image, mask, (h, w))`; see the module docstring.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        transform: Transform | None = None,
        *,
        keep_empty: bool = False,
        with_orig_size: bool = False,
    ) -> None:
        images_dir = Path(images_dir)
        annotation_file = Path(annotation_file)
        if not images_dir.is_dir():
            raise DatasetError(f"{images_dir}: image folder not found")
        super().__init__(root=images_dir, transform=transform, with_orig_size=with_orig_size)
        self.class_names = with_background(VOC_CLASSES)
        data = load_json(annotation_file)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                          "categories")):
            raise DatasetError(f"{annotation_file}: expected a COCO object with lists images, annotations, categories")
        voc_index = {name: i for i, name in enumerate(self.class_names)}
        self.category_to_class: dict[int, int] = {}
        known_categories: set[int] = set()
        for category in data["categories"]:
            try:
                cat_id, name = int(category["id"]), str(category["name"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{annotation_file}: categories: malformed entry {category!r}") from None
            known_categories.add(cat_id)
            voc_name = COCO_TO_VOC.get(name, name if name in voc_index and name != "background" else None)
            if voc_name is not None:
                self.category_to_class[cat_id] = voc_index[voc_name]
        images: dict[int, dict[str, Any]] = {}
        for image in data["images"]:
            try:
                images[int(image["id"])] = {"file_name": str(image["file_name"]), "height": int(image["height"]),
                                            "width": int(image["width"])}
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{annotation_file}: images: malformed entry {image!r}") from None
        self._annotations: dict[int, list[dict[str, Any]]] = {}
        for annotation in data["annotations"]:
            if not isinstance(annotation, dict) or "image_id" not in annotation or "category_id" not in annotation:
                raise DatasetError(f"{annotation_file}: annotations: malformed entry {annotation!r}"[:300])
            ann_id = annotation.get("id", "?")
            if annotation["image_id"] not in images:
                raise DatasetError(f"{annotation_file}: annotation {ann_id}: unknown image_id {annotation['image_id']}")
            if annotation["category_id"] not in known_categories:
                raise DatasetError(
                    f"{annotation_file}: annotation {ann_id}: unknown category_id {annotation['category_id']}"
                )
            if annotation["category_id"] in self.category_to_class:
                self._annotations.setdefault(annotation["image_id"], []).append(annotation)
        self._image_info = images
        empty = 0
        for image_id, info in images.items():
            if image_id not in self._annotations and not keep_empty:
                empty += 1
                continue
            self.report.images += 1
            try:
                path = resolve_inside(images_dir, info["file_name"])
            except BadSample as error:
                self.report.skip(info["file_name"], error.reason)
                continue
            if not path.is_file():
                self._skip_at_construction(path, "image file not found (listed in the annotation file)")
                continue
            self.samples.append(_Sample(id=Path(info["file_name"]).stem, image=path, mask=None, coco_id=image_id))
        if empty:
            self.report.count("images_without_voc_classes", empty)

    def _stated_size(self, sample: _Sample) -> tuple[int, int] | None:
        assert sample.coco_id is not None
        info = self._image_info[sample.coco_id]
        return info["width"], info["height"]

    def _read_mask(self, sample: _Sample, image: np.ndarray | None) -> np.ndarray:
        assert sample.coco_id is not None and image is not None
        info = self._image_info[sample.coco_id]
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise _Defect(self._name(sample.image), f"image is {width}x{height} but the annotation file says "
                                                    f"{info['width']}x{info['height']}")
        try:
            return render_voc_mask(self._annotations.get(sample.coco_id, []), height, width, self.category_to_class)
        except (ValueError, TypeError, KeyError) as error:
            raise _Defect(self._name(sample.image), f"malformed segmentation in its annotations ({error})") from None


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic shapes


class ShapesSegmentation(_SegmentationDataset):
    """The synthetic shapes set (`mobilevision.data.shapes`): `images/*`, `masks/<stem>.png`, `annotations.json`.

    The image list and class names come from `annotations.json` (COCO). Category ids must be 1..K: the index masks
    store the category id of the top-most shape, 0 for background, so class index = category id.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Transform | None = None,
        *,
        with_orig_size: bool = False,
    ) -> None:
        root = Path(root)
        annotation_file = root / "annotations.json"
        if not (root / "masks").is_dir():
            raise DatasetError(f"{root / 'masks'}: mask folder not found (expected images/, masks/, annotations.json)")
        super().__init__(root=root, transform=transform, with_orig_size=with_orig_size)
        data = load_json(annotation_file)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("categories"), list
        ):
            raise DatasetError(f"{annotation_file}: expected a COCO object with lists images and categories")
        try:
            categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{annotation_file}: categories: malformed entry") from None
        ids = [i for i, _ in categories]
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetError(f"{annotation_file}: categories: ids must be 1..K (mask values), got {ids}")
        self.class_names = ["background"] + [name for _, name in categories]
        for image in data["images"]:
            try:
                file_name = str(image["file_name"])
            except (KeyError, TypeError):
                raise DatasetError(f"{annotation_file}: images: malformed entry {image!r}") from None
            self.report.images += 1
            try:
                # file_name is relative to images/ (COCO style); accept one relative to the root (images/x.png) too.
                path = resolve_inside(root / "images", file_name)
                if not path.is_file():
                    path = resolve_inside(root, file_name)
            except BadSample as error:
                self.report.skip(file_name, error.reason)
                continue
            stem = Path(file_name).stem
            mask = root / "masks" / f"{stem}.png"
            if not path.is_file():
                self._skip_at_construction(root / "images" / file_name, "image file not found (in annotations.json)")
            elif not mask.is_file():
                self._skip_at_construction(mask, "mask file not found")
            else:
                self.samples.append(_Sample(id=stem, image=path, mask=mask))


def open_shapes_segmentation(
    root: str | os.PathLike[str],
    transform: Transform | None = None,
    *,
    with_orig_size: bool = False,
    **generator_kwargs: Any,
) -> ShapesSegmentation:
    """Open the shapes set at `root`, generating it first when absent or made with other parameters.

    `generator_kwargs` go to `mobilevision.data.shapes.ensure_shapes` (`num_images` required, `seed`, `image_size`,
    ...); generation is safe when several DDP ranks call this at once.
    """
    from mobilevision.data.shapes import ensure_shapes  # the generator is only needed here

    paths = ensure_shapes(root, **generator_kwargs)
    return ShapesSegmentation(paths.root, transform, with_orig_size=with_orig_size)


# ---------------------------------------------------------------------------------------------------------------------
# Augmentation and batching


def train_transforms(
    crop_size: int = 513,
    scale: tuple[float, float] = (0.5, 2.0),
    *,
    hflip: float = 0.5,
    fill: tuple[int, int, int] = IMAGENET_MEAN_255,
    seed: int | None = None,
) -> A.Compose:
    """The DeepLab training augmentation: random scale in `scale`, pad to `crop_size` (image with `fill`, mask with
    255), random `crop_size` x `crop_size` crop, horizontal flip with probability `hflip`.

    Image resampling is bilinear, mask resampling nearest (labels are never blended). The mask uses OpenCV's
    INTER_NEAREST_EXACT, which samples at pixel centres like INTER_LINEAR does; plain INTER_NEAREST does not, and
    shifts the mask by up to one pixel against the image (measured at scale 1.3 on a painted rectangle).
    `seed` makes the random draws reproducible (None: fresh randomness).
    """
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    low, high = scale
    if not 0 < low <= high:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
    return A.Compose([
        # albumentations' scale_limit is relative to 1: (low - 1, high - 1) gives factors uniform in [low, high].
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST_EXACT, p=1.0),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=VOID),
        A.RandomCrop(height=crop_size, width=crop_size),
        A.HorizontalFlip(p=hflip),
    ], seed=seed)  # fmt: skip


def eval_transforms(
    mode: str = "pad",
    size: int | tuple[int, int] | None = None,
    multiple: int = 16,
    *,
    fill: tuple[int, int, int] = IMAGENET_MEAN_255,
) -> A.Compose:
    """Evaluation transform on the whole image (see the module docstring for how to crop back).

    Args:
        mode: "pad": pad bottom/right to at least `size` (if given) and to a multiple of `multiple` (the output
            stride), image with `fill`, mask with 255. "resize": resize to `size` (int or (h, w), required).
        size: see `mode`.
        multiple: the output stride the padded size must be a multiple of ("pad" mode).
    """
    if mode == "pad":
        if multiple <= 0:
            raise ValueError(f"multiple must be positive, got {multiple}")
        pad = {"position": "top_left", "border_mode": cv2.BORDER_CONSTANT, "fill": fill, "fill_mask": VOID}
        steps: list[Any] = []
        if size is not None:
            height, width = (size, size) if isinstance(size, int) else size
            steps.append(A.PadIfNeeded(min_height=height, min_width=width, **pad))
        steps.append(A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=multiple,
                                   pad_width_divisor=multiple, **pad))
        return A.Compose(steps)
    if mode == "resize":
        if size is None:
            raise ValueError("eval_transforms(mode='resize') needs size (int or (h, w)), got None")
        height, width = (size, size) if isinstance(size, int) else size
        return A.Compose([A.Resize(height, width, interpolation=cv2.INTER_LINEAR,
                                   mask_interpolation=cv2.INTER_NEAREST_EXACT)])
    raise ValueError(f"mode must be 'pad' or 'resize', got {mode!r}")


def collate_segmentation(
    batch: Sequence[Sample | None], *, fill: tuple[int, int, int] = IMAGENET_MEAN_255
) -> tuple[torch.Tensor, ...] | None:
    """Stack samples, dropping None (bad samples). Returns None when every sample of the batch was bad.

    Samples of different sizes (whole-image evaluation) are padded at the bottom/right to the largest height and
    width of the batch, image with `fill`, mask with 255 (void), which keeps the padding contract of
    `eval_transforms`. `sizes` records each sample's own size, so evaluation can run every image on its own canvas
    and give the same answer whatever else shares its batch (the image-pooling branch averages over the whole input,
    padding included).

    Returns:
        `(images uint8 [B, 3, H, W], masks int64 [B, H, W], sizes int64 [B, 2])` with sizes the (h, w) of each
        sample before this batch padding, plus `orig_sizes int64 [B, 2]` (h, w of the decoded images) when the
        samples carry them (`with_orig_size=True`).
    """
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return None
    height = max(int(s[0].shape[1]) for s in samples)
    width = max(int(s[0].shape[2]) for s in samples)
    images = torch.empty((len(samples), 3, height, width), dtype=torch.uint8)
    images[:] = torch.tensor(fill, dtype=torch.uint8).view(1, 3, 1, 1)
    masks = torch.full((len(samples), height, width), VOID, dtype=torch.int64)
    for i, sample in enumerate(samples):
        image, mask = sample[0], sample[1]
        images[i, :, : image.shape[1], : image.shape[2]] = image
        masks[i, : mask.shape[0], : mask.shape[1]] = mask
    sizes = torch.tensor([[int(s[0].shape[1]), int(s[0].shape[2])] for s in samples], dtype=torch.int64)
    if len(samples[0]) == 3:
        orig_sizes = torch.tensor([list(s[2]) for s in samples], dtype=torch.int64)  # type: ignore[misc]
        return images, masks, sizes, orig_sizes
    return images, masks, sizes
