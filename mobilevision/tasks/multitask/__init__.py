"""The multi-task model: one MobileNetV2 pass feeding the SSDLite head and the Mobile DeepLabv3 head.

Contracts between the parts of this task:

- Model (`model.MultiTaskModel`, built by `build_model("ssdlite_deeplabv3_mobilenet_v2", ...)`): a `Detector`
  (`num_classes`: the detector's classes with background) with a segmentation head (`seg_num_classes`, its own label
  space). `forward_all(images)` -> (head outputs, default boxes, level sizes, segmentation logits [B, S, H, W] at
  the input size), one backbone pass.
- Samples (`data`): `(image uint8 [3, H, W], target)` where target holds the detection keys of the detection
  datasets (`boxes` float32 [N, 4] x1y1x2y2 in the returned image's pixels, `labels` int64 [N] in 1..K, `image_id`,
  `orig_size` (h, w), `file`) and
    `mask`: int64 [H, W] in the returned image's pixels, class index per pixel, 255 (void) where unknown;
    `has_boxes`: bool, False when the image has no box annotation at all (its detection loss is skipped; an image
        whose annotation lists no object is a background image and has_boxes True);
    `has_mask`: bool, False when the image has no mask (its mask is all void; its segmentation loss is skipped);
    `orig_mask` (evaluation datasets only): int64 [h, w], the mask at the decoded image's size, before any
        transform (segmentation is scored at the original resolution, as `predict` writes it).
  `collate_multitask` stacks images into [B, 3, H, W] and keeps the targets a list, dropping skipped (None) samples.
- Checkpoints (`ModelMeta`): task "multitask", `class_names` / `category_ids` the detector's, `mask_class_names`
  the segmentation head's, `input_size` the square input both answers are computed at.
"""
