"""Detection datasets: COCO-format json (COCO 2017, the synthetic shapes, any export) and PASCAL VOC (2007, 2012,
07+12), with the label mapping, box repair and defect counting every one of them shares.

What a dataset guarantees, whatever the input:
- Structure is checked at construction, before any work: malformed JSON or XML layout, an annotation whose image or
  category id is unknown, a missing split file -> `DatasetError` naming the file and the entry.
- Boxes are repaired at construction against the annotated image size (and again, once, at the first read of an
  image whose decoded size differs or was not given), and counted in `.report`: a box with non-positive width or height, or
  entirely outside its image, is dropped (`dropped_boxes`); one partly outside is clipped (`clipped_boxes`). Crowd
  annotations (COCO `iscrowd`) and VOC `difficult` objects are not training targets (`crowd` / `difficult`), but
  they stay in `.coco` so COCOeval ignores detections on them, as the benchmarks do.
- `__getitem__` decodes the image with `mobilevision.data.decode.read_image_in_frame`: EXIF orientation applied,
  unless it would turn the image away from the annotation's stated size (`exif_frame_kept` counts those); a bad file (missing, empty, truncated,
  not an image, a name escaping the image folder) returns None after a `DataWarning`, and is recorded once in
  `.report.skipped`. Images without annotations stay: background images.
- `.coco` is a pycocotools `COCO` ground truth in the original image pixels, `.meta` the `DetectionMeta`.

Targets follow the package contract: `(image uint8 [3, H, W], {"boxes": float32 [N, 4] x1 y1 x2 y2 in the pixels
of the returned image, "labels": int64 [N] in 1..K, "image_id": int, "orig_size": (h, w) of the decoded image,
"file": str, the image's name as the dataset lists it})`.
"""

from __future__ import annotations

import contextlib
import io
import os
import reprlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from mobilevision.data.decode import BadSample, read_image_in_frame, resolve_inside
from mobilevision.data.jsonio import load_json
from mobilevision.data.labels import VOC_CLASSES
from mobilevision.data.report import DataWarning, DefectReport
from mobilevision.data.seeding import SampleKey, TransformSeeder
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.transforms import eval_transforms, train_transforms

__all__ = [
    "VOC_CLASSES",
    "CocoDetection",
    "DetectionMeta",
    "VOCDetection",
    "coco2017",
    "collate_detection",
    "eval_transforms",
    "load_json",
    "parse_voc_xml",
    "sanitize_boxes",
    "train_transforms",
    "voc0712_trainval",
]

Target = dict[str, Any]
Sample = tuple[Tensor, Target]
# An albumentations Compose or anything with its call convention: f(image=, bboxes=, labels=) -> dict, same keys.
Transforms = Callable[..., dict[str, Any]]


@dataclass
class DetectionMeta:
    """The contiguous label space of a dataset: label 0 is background, labels 1..K are its categories.

    `category_ids[label]` is the dataset's own category id of `label` (COCO's run 1..90 with gaps); entry 0 is 0.
    Plain lists of str and int, so `to_dict()` travels in a checkpoint and comes back with `from_dict`.
    """

    class_names: list[str]
    category_ids: list[int]
    _label_of: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(
                f"class_names and category_ids differ in length: {len(self.class_names)} != {len(self.category_ids)}"
            )
        if not self.class_names or self.class_names[0] != "background":
            raise ValueError(f"class_names[0] must be 'background', got {self.class_names[:1]}")
        if len(set(self.category_ids[1:])) != len(self.category_ids) - 1:
            raise ValueError(f"category_ids must be unique, got {self.category_ids}")
        self._label_of = {cid: label for label, cid in enumerate(self.category_ids) if label > 0}

    @property
    def num_classes(self) -> int:
        """K + 1: the classes a model of this label space predicts, background included (the package's one
        meaning of `num_classes`, as in `build_model`, `Detector` and the DataModules)."""
        return len(self.class_names)

    @property
    def num_object_classes(self) -> int:
        """K, the dataset's object classes (background not counted): COCO's 80, VOC's 20."""
        return len(self.class_names) - 1

    def label_of(self, category_id: int) -> int:
        """Contiguous label (1..K) of a dataset category id; KeyError if unknown."""
        return self._label_of[int(category_id)]

    def category_of(self, label: int) -> int:
        """Dataset category id of a contiguous label 1..K."""
        if not 1 <= int(label) <= self.num_object_classes:
            raise ValueError(f"label must be in 1..{self.num_object_classes}, got {label}")
        return self.category_ids[int(label)]

    @classmethod
    def from_categories(cls, categories: Iterable[dict[str, Any]]) -> DetectionMeta:
        """From COCO `categories` entries (`id`, `name`), ordered by id."""
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return cls(["background"] + [str(c["name"]) for c in ordered], [0] + [int(c["id"]) for c in ordered])

    def to_dict(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "category_ids": list(self.category_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectionMeta:
        return cls([str(n) for n in data["class_names"]], [int(i) for i in data["category_ids"]])


def sanitize_boxes(boxes: np.ndarray, width: float | None, height: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Repair x1 y1 x2 y2 boxes (N, 4) against an image of `width` x `height` (None: size unknown, only drop
    degenerate ones).

    Returns:
        (kept boxes float32 (M, 4), keep mask bool (N,), number of boxes clipped). Dropped: non-finite, width or
        height <= 0, or nothing left inside the image. Clipped: partly outside.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    clipped = boxes.copy()
    if width is not None and height is not None:
        clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    # Judged in float32, the dtype training uses: a side below float32's resolution rounds to 0 (log(0) in the box
    # coder: an infinite loss) and a coordinate beyond its range to inf.
    with np.errstate(over="ignore", invalid="ignore"):
        out = clipped.astype(np.float32)
    keep &= np.isfinite(out).all(1) & (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    n_clipped = int((keep & (clipped != boxes).any(1)).sum())
    return out[keep], keep, n_clipped


@dataclass
class _Record:
    """One image: where it is (or why it cannot be read) and its repaired training boxes."""

    image_id: int
    file_name: str
    path: Path | None
    defect: str | None  # set when the path was refused before any read
    width: int | None
    height: int | None
    boxes: np.ndarray  # float32 (N, 4) x1 y1 x2 y2, original pixels
    labels: np.ndarray  # int64 (N,)


class _DetectionDataset(Dataset):
    """Shared reading path: decode, repair against the decoded size, transform, convert to the contract."""

    _records: list[_Record]
    coco: COCO
    meta: DetectionMeta
    report: DefectReport
    transforms: Transforms | None

    def _init_common(self, transforms: Transforms | None) -> None:
        self.transforms = transforms
        self._skipped_indices: set[int] = set()
        self._repaired_indices: set[int] = set()
        self._frame_kept_indices: set[int] = set()
        self._seeder = TransformSeeder()

    def __len__(self) -> int:
        return len(self._records)

    @property
    def image_ids(self) -> list[int]:
        return [r.image_id for r in self._records]

    def _skip(self, index: int, reason: str) -> None:
        record = self._records[index]
        warnings.warn(f"skipping {record.file_name}: {reason}", DataWarning, stacklevel=3)
        # Recorded once per image, however many epochs ask for it.
        if index not in self._skipped_indices:
            self._skipped_indices.add(index)
            self.report.skip(record.file_name, reason, warn=False)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Decoded RGB uint8 (H, W, 3), boxes float32 (N, 4) and labels int64 (N,) before any transform, or None."""
        record = self._records[index]
        if record.defect is not None or record.path is None:
            self._skip(index, record.defect or "no path")
            return None
        stated = (record.width, record.height) if record.width and record.height else None
        try:
            image, frame_kept = read_image_in_frame(record.path, stated)
        except BadSample as error:
            self._skip(index, error.reason)
            return None
        if frame_kept and index not in self._frame_kept_indices:
            # Annotated in the stored frame: EXIF rotation would misplace every box (counted once per image).
            self._frame_kept_indices.add(index)
            self.report.count("exif_frame_kept")
        height, width = image.shape[:2]
        boxes, labels = record.boxes, record.labels
        if (width, height) != (record.width, record.height) and len(boxes):
            # The annotation's stated size disagrees with the pixels (or was absent): keep targets inside the image,
            # and count what that repaired once, however many epochs read the image.
            boxes, keep, n_clipped = sanitize_boxes(boxes, width, height)
            labels = labels[keep]
            if index not in self._repaired_indices:
                self._repaired_indices.add(index)
                self.report.count("dropped_boxes", int((~keep).sum()))
                self.report.count("clipped_boxes", n_clipped)
        return image, boxes, labels

    def __getitem__(self, key: SampleKey) -> Sample | None:
        """`key` is an index, or `(index, seed)` from a training sampler to seed this sample's augmentation."""
        index = self._seeder(self.transforms, key)
        loaded = self.load(index)
        if loaded is None:
            return None
        image, boxes, labels = loaded
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target: Target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "image_id": self._records[index].image_id,
            "orig_size": orig_size,
            # The image's name in the dataset: a non-finite loss names the files of its batch.
            "file": self._records[index].file_name,
        }
        # HWC -> CHW as a view; the collate's stack makes the batch contiguous in one copy.
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), target

    def _new_report(self) -> DefectReport:
        report = DefectReport(images=len(self._records))
        for key in ("dropped_boxes", "clipped_boxes", "crowd"):
            report.extra[key] = 0
        report.extra["object_classes"] = self.meta.num_object_classes
        return report


def coco_from_dict(dataset: dict[str, Any]) -> COCO:
    """A pycocotools COCO built from an in-memory dict, without its prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# A stated image side beyond this is not a real size (and would overflow float conversions): treated as unknown.
_MAX_SIDE = 2**31


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_coco(data: Any, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the structure of a COCO detection dict; return a copy with `area`/`iscrowd` filled where absent.

    Raises:
        DatasetError: naming `source` and the entry: not an object, missing lists, duplicate or unknown image or
            category ids, a `bbox` that is not four numbers.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{source}: missing or not a list: {key!r}")
    annotations = data.get("annotations", [])  # absent in image-info files such as test-dev: no boxes, not an error
    if not isinstance(annotations, list):
        raise DatasetError(f"{source}: not a list: 'annotations'")
    image_ids: set[int] = set()
    for position, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not _is_int(image.get("id")) or not isinstance(image.get("file_name"), str):
            raise DatasetError(f"{source}: images[{position}]: needs an integer 'id' and a string 'file_name'")
        if image["id"] in image_ids:
            raise DatasetError(f"{source}: images[{position}]: duplicate image id {image['id']}")
        image_ids.add(image["id"])
    category_ids: set[int] = set()
    for position, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not _is_int(category.get("id")) or "name" not in category:
            raise DatasetError(f"{source}: categories[{position}]: needs an integer 'id' and a 'name'")
        if category["id"] in category_ids:
            raise DatasetError(f"{source}: categories[{position}]: duplicate category id {category['id']}")
        category_ids.add(category["id"])
    fixed = []
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DatasetError(f"{source}: annotations[{position}]: not an object")
        name = f"annotation id {ann['id']!r}" if "id" in ann else f"annotations[{position}]"
        if "id" in ann and not _is_int(ann["id"]):
            raise DatasetError(f"{source}: {name}: 'id' must be an integer")
        # _is_int first: an id that is a list or an object is unhashable and would break the set lookup.
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
            raise DatasetError(f"{source}: {name}: unknown image id {ann.get('image_id')!r}")
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in category_ids:
            raise DatasetError(f"{source}: {name}: unknown category id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise DatasetError(f"{source}: {name}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        try:
            xywh = [float(v) for v in bbox]
        except OverflowError:  # JSON integers have no size limit; 1e400 as an int does not fit a float
            shown = reprlib.repr(bbox)
            raise DatasetError(f"{source}: {name}: 'bbox' holds a number too large for a float: {shown}") from None
        ann = dict(ann)
        ann.setdefault("id", position + 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", xywh[2] * xywh[3])
        fixed.append(ann)
    if len({a["id"] for a in fixed}) != len(fixed):
        raise DatasetError(f"{source}: annotation ids are not unique")
    return {**data, "annotations": fixed}


class CocoDetection(_DetectionDataset):
    """A COCO-format detection set: `annotations` json + the `images` folder its `file_name`s are relative to.

    Args:
        images: image folder; names in the json that resolve outside it are refused (skipped, never read).
        annotations: COCO instances json (`images`, `categories`, optional `annotations`).
        transforms: `train_transforms(size)`, `eval_transforms(size)` or None (original size, no transform).
        meta: force this label mapping (e.g. the training set's for a validation set); the json's categories must
            be the same, otherwise `DatasetError`. Default: derived from the json, categories ordered by id.
    """

    def __init__(
        self,
        images: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        *,
        transforms: Transforms | None = None,
        meta: DetectionMeta | None = None,
    ) -> None:
        self.images_dir = Path(images)
        self.annotations_file = Path(annotations)
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: image folder not found")
        data = validate_coco(load_json(self.annotations_file), self.annotations_file)
        own_meta = DetectionMeta.from_categories(data["categories"])
        if meta is not None and meta.category_ids != own_meta.category_ids:
            raise DatasetError(
                f"{self.annotations_file}: categories {own_meta.category_ids[1:]} differ from the expected "
                f"{meta.category_ids[1:]}"
            )
        self.meta = meta or own_meta
        self.coco = coco_from_dict(data)
        self._records = []
        self._init_common(transforms)
        per_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann)
        crowd = dropped = clipped = 0
        for image in data["images"]:
            anns = per_image.get(image["id"], [])
            crowd += sum(1 for a in anns if a["iscrowd"])
            anns = [a for a in anns if not a["iscrowd"]]
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            width, height = image.get("width"), image.get("height")
            size_known = _is_int(width) and _is_int(height) and 0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE
            boxes, keep, n_clipped = sanitize_boxes(xyxy, width if size_known else None, height if size_known else None)
            dropped += int((~keep).sum())
            clipped += n_clipped
            labels = np.array([self.meta.label_of(a["category_id"]) for a in anns], dtype=np.int64)[keep]
            try:
                path, defect = resolve_inside(self.images_dir, image["file_name"]), None
            except BadSample as error:
                path, defect = None, error.reason
            self._records.append(
                _Record(
                    image_id=image["id"], file_name=image["file_name"], path=path, defect=defect,
                    width=width if size_known else None, height=height if size_known else None,
                    boxes=boxes, labels=labels,
                )
            )  # fmt: skip
        self.report = self._new_report()
        self.report.extra.update(dropped_boxes=dropped, clipped_boxes=clipped, crowd=crowd)


def coco2017(root: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> CocoDetection:
    """The standard layout: `root/annotations/instances_{split}2017.json` and `root/{split}2017/`."""
    root = Path(root)
    return CocoDetection(root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json", **kwargs)


@dataclass
class VOCObject:
    name: str
    box: tuple[float, float, float, float]  # x1 y1 x2 y2, 0-based continuous pixels (VOC's 1-based xmin - 1)
    difficult: bool


@dataclass
class VOCAnnotation:
    width: int | None
    height: int | None
    objects: list[VOCObject]


def parse_voc_xml(data: bytes, source: str) -> VOCAnnotation:
    """Parse one VOC annotation with defusedxml (no entity expansion, no external references).

    VOC boxes are 1-based inclusive pixel indices; we return continuous coordinates: (xmin - 1, ymin - 1, xmax, ymax).

    Raises:
        BadSample: unparsable XML, forbidden constructs, or a malformed `bndbox` (the image is skipped).
        DatasetError: an object whose class is not one of the 20 VOC classes (a structural error).
    """
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        root = ET.fromstring(data)
    except DefusedXmlException:
        raise BadSample("annotation XML uses forbidden constructs (entities or external references)") from None
    except ET.ParseError as error:
        raise BadSample(f"annotation XML is malformed ({error})") from None
    except (LookupError, UnicodeError, ValueError) as error:  # e.g. <?xml encoding="foo"?>: unknown encoding
        raise BadSample(f"annotation XML cannot be decoded ({error})") from None

    def number(node: Any, tag: str) -> float | None:
        text = node.findtext(tag) if node is not None else None
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None

    size = root.find("size")
    width, height = number(size, "width"), number(size, "height")
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetError(f"{source}: object class {name!r} is not a VOC class")
        bndbox = obj.find("bndbox")
        coords = [number(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in coords):
            raise BadSample(f"annotation XML has an object {name!r} without a complete bndbox")
        xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
        objects.append(VOCObject(name, (xmin - 1, ymin - 1, xmax, ymax), difficult))
    # `float()` takes "inf" and "nan": a size must be finite (int(inf) raises) and positive to count.
    valid = width is not None and height is not None and 0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE
    if not valid:
        return VOCAnnotation(None, None, objects)
    return VOCAnnotation(int(width), int(height), objects)  # type: ignore[arg-type]


def _voc_year_dirs(root: Path, split: str, years: Sequence[str] | None) -> list[Path]:
    if (root / "Annotations").is_dir() or (root / "ImageSets").is_dir():
        return [root]  # root is itself VOC2007 / VOC2012
    if years:
        return [root / f"VOC{y}" for y in years]
    found = sorted(p for p in root.glob("VOC20*") if (p / "ImageSets" / "Main" / f"{split}.txt").is_file())
    if not found:
        raise DatasetError(
            f"{root}: not a VOC folder (expected Annotations/, ImageSets/Main/{split}.txt, JPEGImages/ in it, "
            "or VOC2007/, VOC2012/ under it)"
        )
    return found


def check_voc_layout(root: str | os.PathLike[str], split: str, years: Sequence[str] | None = None) -> list[Path]:
    """Check, without reading any annotation, that `root` holds the list file of `split` for every year.

    DataModules call it at construction so a wrong root is one message before any model is built; returns the
    year folders.
    """
    if not root or not Path(root).is_dir():
        raise DatasetError(f"VOC root {str(root)!r} is not a folder; set --data.init_args.root to a VOCdevkit folder")
    year_dirs = _voc_year_dirs(Path(root), split, years)
    for year_dir in year_dirs:
        list_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: split file not found (VOCdevkit/VOC20xx/ImageSets/Main layout)")
    return year_dirs


class VOCDetection(_DetectionDataset):
    """PASCAL VOC detection: `Annotations/*.xml`, `ImageSets/Main/{split}.txt`, `JPEGImages/*.jpg`.

    Args:
        root: a `VOCdevkit` folder (with `VOC2007/`, `VOC2012/`) or one year's folder.
        split: `train`, `val`, `trainval` or `test` (a file name in `ImageSets/Main/`).
        years: which years under a VOCdevkit root, e.g. `("2007", "2012")` for 07+12; default: every year folder
            that has the split.
        transforms: as for `CocoDetection`.
        keep_difficult: train on `difficult` objects too (default False, as the VOC protocol ignores them).

    Image ids are 1..N in listing order; `.ids[i]` is `"VOC2007/000005"`. `.coco` holds every object, difficult ones
    as `iscrowd=1`, so COCOeval ignores detections on them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "trainval",
        *,
        years: Sequence[str] | None = None,
        transforms: Transforms | None = None,
        keep_difficult: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: VOC folder not found")
        self.meta = DetectionMeta(["background", *VOC_CLASSES], list(range(len(VOC_CLASSES) + 1)))
        self._records = []
        self.ids: list[str] = []
        self._init_common(transforms)
        gt_images: list[dict[str, Any]] = []
        gt_annotations: list[dict[str, Any]] = []
        dropped = clipped = difficult_count = 0
        self._voc_dirs = _voc_year_dirs(self.root, split, years)
        for year_dir in self._voc_dirs:
            list_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
            if not list_file.is_file():
                raise DatasetError(f"{list_file}: split file not found")
            try:
                names = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
            except UnicodeDecodeError:
                raise DatasetError(f"{list_file}: split file is not text") from None
            for name in names:
                image_id = len(self._records) + 1
                file_name = f"{year_dir.name}/JPEGImages/{name}.jpg"
                xml_name = f"{year_dir.name}/Annotations/{name}.xml"
                annotation, defect, path = VOCAnnotation(None, None, []), None, None
                try:
                    path = resolve_inside(year_dir / "JPEGImages", f"{name}.jpg")
                    xml_path = resolve_inside(year_dir / "Annotations", f"{name}.xml")
                    try:
                        xml_bytes = xml_path.read_bytes()
                    except OSError:
                        raise BadSample(f"annotation file {xml_name} not found or unreadable") from None
                    annotation = parse_voc_xml(xml_bytes, str(year_dir / "Annotations" / f"{name}.xml"))
                except BadSample as error:
                    defect = error.reason
                boxes = np.array([o.box for o in annotation.objects], dtype=np.float64).reshape(-1, 4)
                is_difficult = np.array([o.difficult for o in annotation.objects], dtype=bool)
                labels = np.array([self.meta.label_of(VOC_CLASSES.index(o.name) + 1) for o in annotation.objects],
                                  dtype=np.int64)  # fmt: skip
                kept, keep, n_clipped = sanitize_boxes(boxes, annotation.width, annotation.height)
                dropped += int((~keep).sum())
                clipped += n_clipped
                difficult_count += int(is_difficult[keep].sum())
                train = ~is_difficult[keep] if not keep_difficult else np.ones(int(keep.sum()), bool)
                self._records.append(
                    _Record(image_id, file_name, path, defect, annotation.width, annotation.height,
                            kept[train], labels[keep][train])
                )  # fmt: skip
                self.ids.append(f"{year_dir.name}/{name}")
                gt_images.append({"id": image_id, "file_name": file_name, "width": annotation.width or 0,
                                  "height": annotation.height or 0})  # fmt: skip
                for box, label, hard in zip(kept, labels[keep], is_difficult[keep]):
                    w, h = float(box[2] - box[0]), float(box[3] - box[1])
                    gt_annotations.append(
                        {"id": len(gt_annotations) + 1, "image_id": image_id, "category_id": int(label),
                         "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": int(hard)}
                    )  # fmt: skip
        categories = [{"id": i + 1, "name": n, "supercategory": "voc"} for i, n in enumerate(VOC_CLASSES)]
        self.coco = coco_from_dict({"images": gt_images, "annotations": gt_annotations, "categories": categories})
        self.report = self._new_report()
        self.report.extra.update(dropped_boxes=dropped, clipped_boxes=clipped, difficult=difficult_count)


def voc0712_trainval(root: str | os.PathLike[str], **kwargs: Any) -> VOCDetection:
    """VOC2007 trainval + VOC2012 trainval under a `VOCdevkit` folder: the usual VOC training set."""
    return VOCDetection(root, "trainval", years=("2007", "2012"), **kwargs)


def to_coco_main(argv: Sequence[str]) -> int:
    """`mobilevision data to-coco --root VOCdevkit --split test [--year 2007] --out gt.json`.

    The ground truth validation scores a VOC split against (difficult objects as COCO crowd regions, which COCOeval
    ignores, as the VOC protocol does), as a COCO json whose `file_name`s are relative to `--root`. Then
    `mobilevision predict --source ROOT --annotations gt.json` predicts on exactly that split with its ids, and
    `mobilevision evaluate detection --gt gt.json` scores what `validate` scores.
    """
    import argparse

    from mobilevision.io import atomic_write_json

    parser = argparse.ArgumentParser(prog="mobilevision data to-coco", description=to_coco_main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="VOCdevkit (or one VOC20xx folder)")
    parser.add_argument("--split", required=True, help="split name in ImageSets/Main (train, val, trainval, test)")
    parser.add_argument("--year", action="append", help="year(s) under a VOCdevkit (repeatable; default: every year "
                        "that has the split)")
    parser.add_argument("--out", required=True, type=Path, help="the COCO json to write")
    args = parser.parse_args(list(argv))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VOCDetection(args.root, args.split, years=args.year)
    data = dataset.coco.dataset
    if dataset._voc_dirs == [dataset.root]:  # root is one year's folder: names are relative to it, not its parent
        data = {**data, "images": [{**image, "file_name": image["file_name"].split("/", 1)[1]}
                                   for image in data["images"]]}
    atomic_write_json(args.out, data, indent=None)
    print(f"wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} objects "
          f"({sum(a['iscrowd'] for a in data['annotations'])} difficult, kept as crowd), "
          f"{len(data['categories'])} classes")
    return 0


def collate_detection(batch: Sequence[Sample | None]) -> tuple[Tensor, list[Target]]:
    """Stack samples into (images uint8 [B, 3, H, W], list of B targets), dropping None (skipped samples).

    All images must share one size (the transforms resize them). An all-None batch gives a [0, 3, 0, 0] tensor.
    """
    samples = [s for s in batch if s is not None]
    if not samples:
        return torch.zeros((0, 3, 0, 0), dtype=torch.uint8), []
    shapes = {tuple(s[0].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"images in a batch must share a size (use a resizing transform), got {sorted(shapes)}")
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]
