"""PASCAL VOC detection (2007, 2012, 07+12): `Annotations/*.xml` parsed with defusedxml, `ImageSets/Main` splits,
`difficult` objects kept as crowd regions in the COCO ground truth (ignored by the evaluation, as VOC's protocol)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.labels import VOC_CLASSES
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import (
    MAX_SIDE,
    DetectionDataset,
    DetectionMeta,
    Transforms,
    _Record,
    coco_from_dict,
    sanitize_boxes,
)


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


def parse_voc_xml(data: bytes, source: str, *, classes: Sequence[str] | None = VOC_CLASSES) -> VOCAnnotation:
    """Parse one VOC annotation with defusedxml (no entity expansion, no external references).

    `classes`: the names an object may have (VOC's 20 by default); None accepts any non-empty name (labelImg, CVAT).

    VOC boxes are 1-based inclusive pixel indices; we return continuous coordinates: (xmin - 1, ymin - 1, xmax, ymax).

    Raises:
        BadSample: unparsable XML, forbidden constructs, or a malformed `bndbox` (the image is skipped).
        DatasetError: an object whose class is not one of `classes` (a structural error).
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
        if classes is None and not name:
            raise BadSample("annotation XML has an object without a <name>")
        if classes is not None and name not in classes:
            raise DatasetError(f"{source}: object class {name!r} is not a VOC class")
        bndbox = obj.find("bndbox")
        coords = [number(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in coords):
            raise BadSample(f"annotation XML has an object {name!r} without a complete bndbox")
        xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
        objects.append(VOCObject(name, (xmin - 1, ymin - 1, xmax, ymax), difficult))
    # `float()` takes "inf" and "nan": a size must be finite (int(inf) raises) and positive to count.
    valid = width is not None and height is not None and 0 < width < MAX_SIDE and 0 < height < MAX_SIDE
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


class VOCDetection(DetectionDataset):
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
                labels = np.array(
                    [self.meta.label_of(VOC_CLASSES.index(o.name) + 1) for o in annotation.objects], dtype=np.int64
                )
                kept, keep, n_clipped = sanitize_boxes(boxes, annotation.width, annotation.height)
                dropped += int((~keep).sum())
                clipped += n_clipped
                difficult_count += int(is_difficult[keep].sum())
                train = ~is_difficult[keep] if not keep_difficult else np.ones(int(keep.sum()), bool)
                self._records.append(
                    _Record(
                        image_id,
                        file_name,
                        path,
                        defect,
                        annotation.width,
                        annotation.height,
                        kept[train],
                        labels[keep][train],
                    )
                )
                self.ids.append(f"{year_dir.name}/{name}")
                gt_images.append(
                    {
                        "id": image_id,
                        "file_name": file_name,
                        "width": annotation.width or 0,
                        "height": annotation.height or 0,
                    }
                )
                for box, label, hard in zip(kept, labels[keep], is_difficult[keep]):
                    w, h = float(box[2] - box[0]), float(box[3] - box[1])
                    gt_annotations.append(
                        {
                            "id": len(gt_annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(label),
                            "bbox": [float(box[0]), float(box[1]), w, h],
                            "area": w * h,
                            "iscrowd": int(hard),
                        }
                    )
        categories = [{"id": i + 1, "name": n, "supercategory": "voc"} for i, n in enumerate(VOC_CLASSES)]
        self.coco = coco_from_dict({"images": gt_images, "annotations": gt_annotations, "categories": categories})
        self.report = self._new_report()
        self.report.extra.update(dropped_boxes=dropped, clipped_boxes=clipped, difficult=difficult_count)


def voc0712_trainval(root: str | os.PathLike[str], **kwargs: Any) -> VOCDetection:
    """VOC2007 trainval + VOC2012 trainval under a `VOCdevkit` folder: the usual VOC training set."""
    return VOCDetection(root, "trainval", years=("2007", "2012"), **kwargs)
