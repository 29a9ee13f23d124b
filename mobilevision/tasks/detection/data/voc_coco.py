"""A VOC detection split as COCO-format ground truth (`mobilevision data to-coco`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

from mobilevision.data.report import DataWarning
from mobilevision.tasks.detection.data.voc import VOCDetection


def voc_split_as_coco(
    root: str | os.PathLike[str], split: str, *, years: Sequence[str] | None = None
) -> dict[str, Any]:
    """The ground truth validation scores a VOC split against (difficult objects as COCO crowd regions, which
    COCOeval ignores, as the VOC protocol does), as a COCO dict whose `file_name`s are relative to `root`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VOCDetection(root, split, years=years)
    data = dataset.coco.dataset
    if dataset._voc_dirs == [dataset.root]:  # root is one year's folder: names are relative to it, not its parent
        data = {
            **data,
            "images": [{**image, "file_name": image["file_name"].split("/", 1)[1]} for image in data["images"]],
        }
    return data
