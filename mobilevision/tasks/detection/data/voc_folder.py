"""Pascal VOC XML in any folder layout (labelImg, CVAT): an images folder and an annotations folder, or one folder
holding both; no VOCdevkit, no ImageSets, any class names.

    root/images/00001.jpg  root/annots/00001.xml     (kangaroo, labelImg)
    root/JPEGImages/...    root/Annotations/...      (CVAT "Pascal VOC" export)
    root/00001.jpg         root/00001.xml            (one folder)

An image is found by the XML's `<filename>` in the images folder (never by `<path>`, which names the author's
machine); when that name is absent or not there, by the XML's own stem (counted `found_by_xml_stem`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilevision.data.decode import BadSample
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.base import DetectionMeta, Transforms
from mobilevision.tasks.detection.data.listed import Entry, ListedDetection, check_names, find_image, stem_images, warn
from mobilevision.tasks.detection.data.voc import VOCAnnotation, parse_voc_xml

IMAGE_FOLDERS = ("images", "JPEGImages", "imgs", "img", "Images")
XML_FOLDERS = ("annots", "annotations", "Annotations", "xml", "labels", "Labels")


def find_voc_folders(root: Path) -> tuple[Path, Path]:
    """(images folder, annotations folder) of a VOC-XML dataset under `root`.

    Raises:
        DatasetError: no XML file in `root` or in any of `XML_FOLDERS` under it.
    """
    for name in XML_FOLDERS:
        if any((root / name).glob("*.xml")):
            xml_dir = root / name
            break
    else:
        if not any(root.glob("*.xml")):
            raise DatasetError(f"{root}: no VOC XML found (looked for *.xml in it and in {', '.join(XML_FOLDERS)}/)")
        xml_dir = root
    images = next((root / n for n in IMAGE_FOLDERS if (root / n).is_dir()), xml_dir)
    return images, xml_dir


def _parse(xml_path: Path, label: str) -> tuple[VOCAnnotation, str | None, str | None]:
    """(annotation, `<filename>`, defect) of one XML file; malformed XML is a structural error."""
    data = xml_path.read_bytes()
    try:
        annotation = parse_voc_xml(data, label, classes=None)
    except BadSample as error:
        if "object" in error.reason:  # an object without a complete bndbox or a name: this image is unusable
            return VOCAnnotation(None, None, []), None, error.reason
        raise DatasetError(f"{label}: {error.reason}") from None
    import defusedxml.ElementTree as ET

    filename = (ET.fromstring(data).findtext("filename") or "").strip()
    return annotation, filename or None, None


class VOCFolderDetection(ListedDetection):
    """VOC XML files in any layout (see the module docstring).

    Args:
        root: the dataset folder.
        images, annotations: the image and XML folders (default: found under `root` by `find_voc_folders`).
        names: the class list, to fix its order (default: the XMLs' names, sorted); an object of another class is
            dropped with a warning (`unknown_class`).
        transforms, keep_difficult: as `VOCDetection`.

    `file_name`s are relative to the images folder; the data's own class ids are 0..K-1 in the class list's order.

    Raises:
        DatasetError: malformed XML (naming the file), no XML, an empty class list or a duplicate name.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        images: str | os.PathLike[str] | None = None,
        annotations: str | os.PathLike[str] | None = None,
        names: Sequence[str] | None = None,
        transforms: Transforms | None = None,
        keep_difficult: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        found_images, found_xml = find_voc_folders(self.root) if images is None or annotations is None else (None, None)
        self.images_dir = Path(images) if images is not None else found_images
        self.xml_dir = Path(annotations) if annotations is not None else found_xml
        assert self.images_dir is not None and self.xml_dir is not None
        xml_files = sorted(self.xml_dir.glob("*.xml"))
        if not xml_files:
            raise DatasetError(f"{self.xml_dir}: no *.xml annotation file")
        given = check_names(list(names), "names") if names is not None else None
        parsed = [(path, *_parse(path, str(path))) for path in xml_files]
        if given is not None:
            class_names = given
        else:
            seen = sorted({o.name for _, a, _, _ in parsed for o in a.objects})
            if not seen:
                raise DatasetError(f"{self.xml_dir}: the class list is empty (no <object> in any XML)")
            class_names = seen
        meta = DetectionMeta(["background", *class_names], [0, *range(len(class_names))])
        by_stem = stem_images(self.images_dir.resolve())
        counts = {"unknown_class": 0, "found_by_xml_stem": 0}
        entries, taken = [], set()
        for xml_path, annotation, filename, defect in parsed:
            path, refused = find_image(self.images_dir, filename) if filename else (None, None)
            if refused is None and (path is None or not path.is_file()) and xml_path.stem in by_stem:
                path = by_stem[xml_path.stem]
                counts["found_by_xml_stem"] += 1
            if path is None and refused is None:
                refused = f"no image named by <filename> {filename!r} or by the XML's stem {xml_path.stem!r}"
            file_name = path.relative_to(self.images_dir.resolve()).as_posix() if path is not None else xml_path.name
            if path is not None and not path.is_relative_to(self.images_dir.resolve()):
                file_name = path.name
            if file_name in taken:
                refused = refused or f"image {file_name} is already annotated by another XML"
                file_name = xml_path.name
            taken.add(file_name)
            objects = [o for o in annotation.objects if o.name in class_names]
            if len(objects) < len(annotation.objects):
                unknown = sorted({o.name for o in annotation.objects} - set(class_names))
                warn(str(xml_path), f"objects of classes {unknown} not in names {class_names} dropped")
                counts["unknown_class"] += len(annotation.objects) - len(objects)
            entries.append(
                Entry(
                    file_name=file_name,
                    path=path,
                    width=annotation.width,
                    height=annotation.height,
                    boxes=np.array([o.box for o in objects], np.float64).reshape(-1, 4),
                    labels=np.array([class_names.index(o.name) + 1 for o in objects], np.int64),
                    difficult=np.array([o.difficult for o in objects], bool),
                    defect=defect or refused,
                )
            )
        super().__init__(
            entries, meta, transforms=transforms, keep_difficult=keep_difficult, counts=counts, format="voc"
        )
