"""Split lists: the text files that name a dataset split's images (VOC's `ImageSets/*/S.txt`, SBD's `train.txt`,
the common `train_aug.txt`), read one way by the dataset readers and by `mobilevision predict --split-list`."""

from __future__ import annotations

import os
from pathlib import Path

from mobilevision.errors import DatasetError

__all__ = ["ID_IMAGE_SUFFIXES", "id_images", "read_id_list"]

# Where the image of a listed id may be: VOC's .jpg first; .jpeg/.png too, for hand-made sets in the same layout.
ID_IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Ids of a split file, in order, duplicates removed.

    Accepts plain ids (`2008_000008`, VOC's `ImageSets/Main/S.txt` with its trailing `1`/`-1` column) and the
    `/JPEGImages/x.jpg /SegmentationClassAug/x.png` lines of common train_aug lists (the first field's stem).

    Raises:
        DatasetError: a missing or unreadable file, naming it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: split list not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read split list ({error})") from None
    ids: dict[str, None] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        token = fields[0]
        if "/" in token or token.lower().endswith((".jpg", ".jpeg", ".png")):
            token = Path(token).stem
        ids.setdefault(token, None)
    return list(ids)


def id_images(folder: str | os.PathLike[str], id_: str) -> list[Path]:
    """The files the image of a listed id may be, in order of preference (`ID_IMAGE_SUFFIXES`)."""
    return [Path(folder) / f"{id_}{suffix}" for suffix in ID_IMAGE_SUFFIXES]
