"""Detection datasets, one format per module: COCO-format json (`coco`: COCO 2017, the synthetic shapes, any
export) and PASCAL VOC (`voc`: 2007, 2012, 07+12), on the label mapping, box repair and defect counting they share
(`base`; the skip/report bookkeeping is `mobilevision.data.dataset.ReportingDataset`). A user's own folder: VOC XML
in any layout (`voc_folder`), YOLO (`yolo`), COCO json from labelling tools (`coco_tools`), found and split by
`custom.detect_format` / `open_custom`, read through `listed.ListedDetection`.

What a dataset guarantees, whatever the input:
- Structure is checked at construction, before any work: malformed JSON or XML layout, an annotation whose image or
  category id is unknown, a missing split file -> `DatasetError` naming the file and the entry.
- Boxes are repaired at construction against the annotated image size (and again, once, at the first read of an image
  whose decoded size differs or was not given), and counted in `.report`: a box with non-positive width or height, or
  entirely outside its image, is dropped (`dropped_boxes`); one partly outside is clipped (`clipped_boxes`). Crowd
  annotations (COCO `iscrowd`) and VOC `difficult` objects are not training targets (`crowd` / `difficult`), but they
  stay in `.coco` so COCOeval ignores detections on them, as the benchmarks do.
- `__getitem__` decodes the image with `mobilevision.data.decode.read_image_in_frame`: EXIF orientation applied, unless
  it would turn the image away from the annotation's stated size (`exif_frame_kept` counts those); a bad file (missing,
  empty, truncated, not an image, a name escaping the image folder) returns None after a `DataWarning`, and is recorded
  once in `.report.skipped`. Images without annotations stay: background images.
- `.coco` is a pycocotools `COCO` ground truth in the original image pixels, `.meta` the `DetectionMeta`.

Targets follow the package contract: `(image uint8 [3, H, W], {"boxes": float32 [N, 4] x1 y1 x2 y2 in the pixels
of the returned image, "labels": int64 [N] in 1..K, "image_id": int, "orig_size": (h, w) of the decoded image,
"file": str, the image's name as the dataset lists it})`.
"""

from __future__ import annotations

from mobilevision.data.jsonio import load_json
from mobilevision.data.labels import VOC_CLASSES
from mobilevision.tasks.detection.data.base import (
    DetectionDataset,
    DetectionMeta,
    coco_from_dict,
    collate_detection,
    sanitize_boxes,
)
from mobilevision.tasks.detection.data.coco import CocoDetection, coco2017, validate_coco
from mobilevision.tasks.detection.data.coco_tools import ToolCocoDetection
from mobilevision.tasks.detection.data.custom import detect_format, open_custom
from mobilevision.tasks.detection.data.voc import (
    VOCAnnotation,
    VOCDetection,
    VOCObject,
    check_voc_layout,
    parse_voc_xml,
    voc0712_trainval,
)
from mobilevision.tasks.detection.data.voc_coco import voc_split_as_coco
from mobilevision.tasks.detection.data.voc_folder import VOCFolderDetection
from mobilevision.tasks.detection.data.yolo import YOLODetection
from mobilevision.tasks.detection.transforms import eval_transforms, train_transforms

__all__ = [
    "VOC_CLASSES",
    "CocoDetection",
    "ToolCocoDetection",
    "VOCFolderDetection",
    "YOLODetection",
    "DetectionDataset",
    "DetectionMeta",
    "VOCAnnotation",
    "VOCDetection",
    "VOCObject",
    "check_voc_layout",
    "coco2017",
    "coco_from_dict",
    "detect_format",
    "open_custom",
    "collate_detection",
    "eval_transforms",
    "load_json",
    "parse_voc_xml",
    "sanitize_boxes",
    "train_transforms",
    "validate_coco",
    "voc_split_as_coco",
    "voc0712_trainval",
]
