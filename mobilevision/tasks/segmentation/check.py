"""`mobilevision data check` for segmentation sets: PASCAL VOC 2012 and train_aug (the task table's checker)."""

from __future__ import annotations

import argparse

from mobilevision.data.report import DefectReport
from mobilevision.errors import UserError


def check_voc(args: argparse.Namespace) -> DefectReport:
    """A VOC segmentation split (`--root VOCdevkit|VOC2012 --split S`, `train_aug` included), decoded through
    `VOCSegmentation`, the reader training uses."""
    from pathlib import Path

    from mobilevision.tasks.segmentation.data import check_voc_segmentation

    if not args.root or not args.split:
        raise UserError("--format voc-seg needs --root DIR and --split S")
    return check_voc_segmentation(Path(args.root), args.split)
