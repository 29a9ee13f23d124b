"""The public datasets' label spaces, defined once for every reader, evaluator and config.

A model's classes are `("background", *object_classes)`: index 0 is background (SSD's and DeepLab's convention), so
a VOC model has 21 outputs and a COCO detector 81. The object-class tuples here never include "background"; adding it
is `with_background`, in one place, so a list cannot gain a second "background" (the 22-class VOC model of
issue 14 came from two lists that disagreed on whether they already held it).
"""

from __future__ import annotations

from collections.abc import Sequence

BACKGROUND = "background"

# PASCAL VOC's 20 object classes in the devkit's order: segmentation mask value i + 1 is VOC_CLASSES[i].
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# COCO category names -> VOC class names (the 20 VOC classes are COCO categories under other names); every other
# COCO category is background when COCO is rendered to VOC's label space (the paper's pre-training).
COCO_TO_VOC: dict[str, str] = {
    "airplane": "aeroplane",
    "bicycle": "bicycle",
    "bird": "bird",
    "boat": "boat",
    "bottle": "bottle",
    "bus": "bus",
    "car": "car",
    "cat": "cat",
    "chair": "chair",
    "cow": "cow",
    "dining table": "diningtable",
    "dog": "dog",
    "horse": "horse",
    "motorcycle": "motorbike",
    "person": "person",
    "potted plant": "pottedplant",
    "sheep": "sheep",
    "couch": "sofa",
    "train": "train",
    "tv": "tvmonitor",
}


def voc_class_of(coco_name: str) -> str | None:
    """The VOC class a COCO category name stands for (`COCO_TO_VOC`, or a VOC class name used as is), None for
    every other category: the one rule by which COCO is rendered to VOC masks and VOC boxes join COCO's labels."""
    return COCO_TO_VOC.get(coco_name, coco_name if coco_name in VOC_CLASSES else None)


def with_background(object_classes: Sequence[str]) -> list[str]:
    """`["background", *object_classes]`, refusing a list that already names the background or repeats a class."""
    names = [str(n) for n in object_classes]
    check_object_classes(names)
    return [BACKGROUND, *names]


def check_object_classes(names: Sequence[str]) -> None:
    """Raise `ValueError` when object-class names hold "background" or a duplicate (a list off by one)."""
    if BACKGROUND in names:
        raise ValueError(f"object classes must not include {BACKGROUND!r} (it is added as class 0): {list(names)[:5]}")
    seen: set[str] = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        raise ValueError(f"class names repeat: {duplicates}")


def check_label_space(class_names: Sequence[str], *, source: str = "class names") -> None:
    """A model's full class list: "background" first and only there, no name twice.

    Raises:
        ValueError: naming `source` and what is wrong.
    """
    if not class_names or class_names[0] != BACKGROUND:
        raise ValueError(f"{source}: class 0 must be {BACKGROUND!r}, got {list(class_names)[:3]}")
    try:
        check_object_classes(class_names[1:])
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map, flat [r0, g0, b0, r1, ...] (768 ints; index 255 is (224, 224, 192)).

    The VOC devkit's `labelcolormap`: the bits of the index are spread over the high bits of r, g and b.
    """
    palette: list[int] = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette
