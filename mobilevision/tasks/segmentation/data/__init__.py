"""Segmentation datasets, one format per module (`voc`: PASCAL VOC 2012 and train_aug with SBD or
SegmentationClassAug; `coco`: COCO rendered to VOC classes; `shapes`: the synthetic shapes), their albumentations
pipelines (`transforms`) and what they share (`base`; the skip/report bookkeeping is
`mobilevision.data.dataset.ReportingDataset`).

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

from mobilevision.tasks.segmentation.data.base import (
    IMAGENET_MEAN_255,
    SegmentationDataset,
    collate_segmentation,
)
from mobilevision.tasks.segmentation.data.coco import COCOSemantic, render_voc_mask
from mobilevision.tasks.segmentation.data.shapes import ShapesSegmentation, open_shapes_segmentation
from mobilevision.tasks.segmentation.data.transforms import eval_transforms, train_transforms
from mobilevision.tasks.segmentation.data.voc import VOCSegmentation, check_voc_layout, check_voc_segmentation
from mobilevision.tasks.segmentation.masks import read_sbd_mask

__all__ = [
    "IMAGENET_MEAN_255",
    "COCOSemantic",
    "SegmentationDataset",
    "ShapesSegmentation",
    "VOCSegmentation",
    "check_voc_layout",
    "check_voc_segmentation",
    "collate_segmentation",
    "eval_transforms",
    "open_shapes_segmentation",
    "read_sbd_mask",
    "render_voc_mask",
    "train_transforms",
]
