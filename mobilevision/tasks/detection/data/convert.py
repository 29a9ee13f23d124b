"""`mobilevision data convert`: a detection folder in one format (VOC XML in any layout, Ultralytics YOLO, a labelling
tool's COCO json) written in another, so the data goes on to other tools (CVAT, FiftyOne, Ultralytics, labelImg).

The data is read by the reader training uses (so its repairs apply: boxes clipped to the image, unusable images and
boxes skipped and reported), split by split as the data has them (YOLO's yaml, Roboflow's or VOC's per-split
folders), and written with its images copied:

- `coco`: `DST/annotations.json` + `DST/images/` (one split), or Roboflow's `DST/<split>/_annotations.coco.json`
  beside the split's images; category ids are 1..K in the class list's order; difficult objects are `iscrowd`.
- `yolo`: `DST/data.yaml` (`path: .`, `names` list), `DST/images/<split>/` mirrored by `DST/labels/<split>/`, one
  `class cx cy w h` row per box (normalised); a background image gets an empty label file. Data with one split
  writes it as `train`, and `val` names the same folder (said in the output): split it with the custom config's
  `split` rule.
- `voc`: labelImg's `DST/images/` + `DST/annots/*.xml` (per split: `DST/<split>/images/`, `DST/<split>/annots/`),
  VOC's 1-based `xmin`/`ymin`, `<difficult>` kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from mobilevision.errors import InvalidValueError
from mobilevision.io import atomic_write_json, atomic_write_text
from mobilevision.tasks.detection.data.coco_tools import ToolCocoDetection, find_coco_json
from mobilevision.tasks.detection.data.custom import FORMATS, _split_folder, _split_json, detect_format
from mobilevision.tasks.detection.data.listed import ListedDetection, image_size
from mobilevision.tasks.detection.data.voc_folder import VOCFolderDetection
from mobilevision.tasks.detection.data.yolo import YOLODetection


@dataclass
class Image:
    """One usable image as read: its file, size and boxes (x1 y1 x2 y2, original pixels), class names, difficult."""

    file_name: str
    path: Path
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]]
    classes: list[str]
    difficult: list[bool]


def read_splits(
    root: str | os.PathLike[str], format: str = "auto"
) -> tuple[str, list[str], dict[str, ListedDetection]]:
    """(the format read, the class list, {split: dataset}) of a detection folder, split as the data has it ("all"
    when it has no splits of its own).

    Raises:
        DatasetError: structure (as training reads it); InvalidValueError: an unknown format.
    """
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt not in FORMATS:
        raise InvalidValueError(f"format {format!r} is not one of {('auto', *FORMATS)}")
    splits: dict[str, ListedDetection] = {}
    if fmt == "yolo":
        splits = {s: YOLODetection(root, s) for s in ("train", "val")}
        try:
            splits["test"] = YOLODetection(root, "test")
        except Exception as error:  # noqa: BLE001 - only "no test split" is expected; others re-raised
            if "no 'test' split" not in str(error):
                raise
        if splits["val"].file_names == splits["train"].file_names:  # one split written by `convert`: read it once
            splits = {"all": splits["train"]}
    elif fmt == "coco":
        jsons = {s: _split_json(root, s) for s in ("train", "val", "test")}
        if jsons["train"] is not None and jsons["val"] is not None:
            splits = {s: ToolCocoDetection(p) for s, p in jsons.items() if p is not None}
        else:
            json_path = find_coco_json(root)
            assert json_path is not None  # detect_format found one, or ToolCocoDetection refuses below
            splits = {"all": ToolCocoDetection(json_path, root if json_path.parent == root else json_path.parent)}
    else:
        folders = {s: _split_folder(root, s) for s in ("train", "val", "test")}
        if folders["train"] is not None and folders["val"] is not None:
            found = {s: f for s, f in folders.items() if f is not None}
            names = sorted({n for f in found.values() for n in VOCFolderDetection(f).meta.class_names[1:]})
            splits = {s: VOCFolderDetection(f, names=names) for s, f in found.items()}
        else:
            splits = {"all": VOCFolderDetection(root)}
    first = next(iter(splits.values()))
    return fmt, list(first.meta.class_names[1:]), splits


def images_of(dataset: ListedDetection) -> tuple[list[Image], list[str]]:
    """(the usable images of a dataset with their repaired boxes, the file names left out and why)."""
    names = {c["id"]: c["name"] for c in dataset.coco.dataset["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in dataset.coco.dataset["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out, left_out = [], []
    for image_id, entry in zip(dataset.image_ids, dataset.entries):
        if entry.defect is not None or entry.path is None:
            left_out.append(f"{entry.file_name}: {entry.defect or 'no image'}")
            continue
        try:
            width, height = image_size(entry.path)
        except Exception as error:  # noqa: BLE001 - BadSample: the reason is said
            left_out.append(f"{entry.file_name}: {getattr(error, 'reason', error)}")
            continue
        anns = by_image.get(image_id, [])
        boxes = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]) for a in anns]
        classes = [names[a["category_id"]] for a in anns]
        out.append(
            Image(entry.file_name, entry.path, width, height, boxes, classes, [bool(a["iscrowd"]) for a in anns])
        )
    return out, left_out


def _num(value: float) -> str:
    return format(round(float(value), 4), ".10g")


def _copy(image: Image, folder: Path, used: set[str]) -> str:
    """Copy the image into `folder` under its base name (made unique), return that name."""
    name, stem, n = image.path.name, image.path.stem, 1
    while name in used:
        name, n = f"{stem}_{n}{image.path.suffix}", n + 1
    used.add(name)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(image.path, folder / name)
    return name


def write_coco(images: list[Image], classes: list[str], json_path: Path, image_dir: Path) -> None:
    ids = {n: i + 1 for i, n in enumerate(classes)}
    used: set[str] = set()
    out_images, annotations = [], []
    prefix = image_dir.relative_to(json_path.parent).as_posix()
    for image_id, image in enumerate(images, 1):
        name = _copy(image, image_dir, used)
        file_name = name if prefix == "." else f"{prefix}/{name}"
        out_images.append({"id": image_id, "file_name": file_name, "width": image.width, "height": image.height})
        for box, cls, hard in zip(image.boxes, image.classes, image.difficult):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[cls],
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": int(hard),
                }
            )
    categories = [{"id": i, "name": n, "supercategory": "none"} for n, i in ids.items()]
    atomic_write_json(json_path, {"images": out_images, "annotations": annotations, "categories": categories})


def write_yolo_split(images: list[Image], classes: list[str], dst: Path, split: str) -> None:
    index = {n: i for i, n in enumerate(classes)}
    used: set[str] = set()
    for image in images:
        name = _copy(image, dst / "images" / split, used)
        rows = []
        for box, cls in zip(image.boxes, image.classes):
            cx, cy = (box[0] + box[2]) / 2 / image.width, (box[1] + box[3]) / 2 / image.height
            w, h = (box[2] - box[0]) / image.width, (box[3] - box[1]) / image.height
            rows.append(f"{index[cls]} {cx:.8f} {cy:.8f} {w:.8f} {h:.8f}")
        text = "".join(f"{row}\n" for row in rows)
        atomic_write_text(dst / "labels" / split / f"{Path(name).stem}.txt", text)


def voc_xml(image: Image, file_name: str) -> str:
    objects = "".join(
        f"  <object>\n    <name>{escape(cls)}</name>\n    <difficult>{int(hard)}</difficult>\n    <bndbox>\n"
        f"      <xmin>{_num(box[0] + 1)}</xmin>\n      <ymin>{_num(box[1] + 1)}</ymin>\n"
        f"      <xmax>{_num(box[2])}</xmax>\n      <ymax>{_num(box[3])}</ymax>\n    </bndbox>\n  </object>\n"
        for box, cls, hard in zip(image.boxes, image.classes, image.difficult)
    )
    return (
        f"<annotation>\n  <folder>images</folder>\n  <filename>{escape(file_name)}</filename>\n  <size>\n"
        f"    <width>{image.width}</width>\n    <height>{image.height}</height>\n    <depth>3</depth>\n  </size>\n"
        f"{objects}</annotation>\n"
    )


def write_voc(images: list[Image], folder: Path) -> None:
    used: set[str] = set()
    for image in images:
        name = _copy(image, folder / "images", used)
        atomic_write_text(folder / "annots" / f"{Path(name).stem}.xml", voc_xml(image, name))


def convert(
    root: str | os.PathLike[str], out: str | os.PathLike[str], *, to: str, format: str = "auto"
) -> tuple[str, list[str]]:
    """Write the detection folder `root` as `to` ("coco", "yolo", "voc") under `out`; return (the format read, one
    line per split written and per image left out).

    Raises:
        DatasetError: structure; InvalidValueError: an unknown format, or `out` inside `root` or not empty.
    """
    if to not in FORMATS:
        raise InvalidValueError(f"--to {to!r} is not one of {FORMATS}")
    root, out = Path(root), Path(out)
    if out.exists() and any(out.iterdir()):
        raise InvalidValueError(f"{out}: the output folder exists and is not empty")
    if out.resolve().is_relative_to(root.resolve()):
        raise InvalidValueError(f"{out}: the output folder is inside the dataset {root}")
    fmt, classes, splits = read_splits(root, format)
    lines: list[str] = []
    single = list(splits) == ["all"]
    for split, dataset in splits.items():
        images, left_out = images_of(dataset)
        lines += [f"left out {line}" for line in left_out]
        if to == "coco":
            folder = out if single else out / ("valid" if split == "val" else split)
            write_coco(
                images,
                classes,
                folder / ("annotations.json" if single else "_annotations.coco.json"),
                folder / "images" if single else folder,
            )
        elif to == "yolo":
            write_yolo_split(images, classes, out, "train" if single else split)
        else:
            write_voc(images, out if single else out / split)
        boxes = sum(len(i.boxes) for i in images)
        lines.append(f"{split}: {len(images)} images, {boxes} boxes")
    if to == "yolo":
        import yaml

        names = list(classes)
        layout: dict[str, Any] = {"path": ".", "train": "images/train"}
        layout["val"] = "images/train" if single else "images/val"
        if "test" in splits:
            layout["test"] = "images/test"
        atomic_write_text(out / "data.yaml", yaml.safe_dump({**layout, "names": names}, sort_keys=False))
        if single:
            lines.append("the data has one split: written as train, and val names the same images")
    return fmt, lines
