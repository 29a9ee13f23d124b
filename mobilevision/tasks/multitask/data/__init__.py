"""Joint datasets for the multi-task model: each image with its boxes and its semantic mask, one sample.

Formats (`formats`): the synthetic shapes (`ShapesMultiTask`), COCO instances with VOC-class masks
(`CocoMultiTask`) and PASCAL VOC with its segmentation masks where present (`VOCMultiTask`). Each is a detection
reader of the detection task (which decodes the image, repairs the boxes and keeps the report) plus the mask its
format gives; `ConcatMultiTask` joins them (COCO + VOC in COCO's label space, `VOCMultiTask(meta=...)`) keeping
each sample's augmentation seeded.

Sample contract (the package's, `mobilevision.tasks.multitask`): `(image uint8 [3, H, W], target)` with the
detection keys (`boxes`, `labels`, `image_id`, `orig_size`, `file`) and `mask` int64 [H, W] (255 void), `has_boxes`,
`has_mask` (False: the mask is all void), and with `with_orig_mask=True` `orig_mask` int64 [h, w] before any
transform. A bad sample (unreadable or missing image or mask, a name leaving its folder, a mask of another size or
with labels outside the label space) is None after a `DataWarning` naming the file, recorded once in `.report`;
structural errors raise `DatasetError` at construction.

Transforms (`train_transforms`, `eval_transforms`): the detection task's pipelines with the mask carried along (void
where the zoom-out adds canvas, nearest-exact resize), seeded per sample as every dataset here.
"""

from __future__ import annotations

from mobilevision.tasks.multitask.data.base import (
    ConcatMultiTask,
    MaskDefect,
    MultiTaskDataset,
    collate_multitask,
    eval_transforms,
    label_mapping,
    train_transforms,
)
from mobilevision.tasks.multitask.data.formats import CocoMultiTask, ShapesMultiTask, VOCMultiTask

__all__ = [
    "CocoMultiTask",
    "ConcatMultiTask",
    "MaskDefect",
    "MultiTaskDataset",
    "ShapesMultiTask",
    "VOCMultiTask",
    "collate_multitask",
    "eval_transforms",
    "label_mapping",
    "train_transforms",
]
