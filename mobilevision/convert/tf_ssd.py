"""Map the TF Object Detection API's SSDLite MobileNetV2 checkpoints (`ssdlite_mobilenet_v2_coco`) onto `Detector`.

The zoo's pipeline.config: the `ssd_mobilenet_v2` feature extractor (MobileNetV2 base with `min_depth` 16 and its
last conv scaled with the width, `FeatureExtractor/MobilenetV2/...`), four depthwise extra layers on layer 19
(`layer_19_1_Conv2d_{i}_1x1_{d/2}`, `layer_19_2_Conv2d_{i}_3x3_s2_{d}[_depthwise]`), one depthwise
`BoxPredictor_{k}` per map (`BoxEncodingPredictor[_depthwise]`, `ClassPredictor[_depthwise]`), multiple-grid
anchors (6 maps, scales 0.2 to 0.95, ratios 1, 2, 0.5, 3, 0.3333, 3 boxes on the first map), the Faster R-CNN box
coder with scales 10/10/5/5, sigmoid scores over 91 outputs (0 = background, index = COCO category id) and batch NMS
(score 1e-8, IoU 0.6, 100 per class, 100 in all) on boxes clipped to the image.

The box coder order is TF's (ty, tx, th, tw); mobilevision's `BoxCoder` is (x, y, w, h) with the same scales, so
the box predictors' output channels are permuted at conversion (per anchor: 1, 0, 3, 2) and the rest of mobilevision
(matching, loss, post-processing, export) sees its own convention. Parity: tests/convert/test_tf_ssd_parity.py.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.convert.tf_mobilenet import Source, _bn, _conv, _depthwise, backbone_sources, infer_width
from mobilevision.errors import WeightsError
from mobilevision.models.anchors import DefaultBoxes

SCOPE = "FeatureExtractor/MobilenetV2"
# COCO's category ids 1..90 with the 10 ids the 2014 release left unused kept as gaps ("N/A", never predicted
# by the zoo model): output k of the converted detector is COCO category id k.
_COCO = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant N/A stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe N/A backpack umbrella N/A N/A "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle N/A wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed N/A dining_table N/A N/A toilet N/A tv laptop mouse "
    "remote keyboard cell_phone microwave oven toaster sink refrigerator N/A book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
)
COCO_91_CLASSES: list[str] = ["background"] + [n.replace("_", " ") for n in _COCO.split()]
# COCO 2017's 80 category ids (the 91-output map without its gaps): the label space of COCO's own annotations.
COCO_80_IDS: list[int] = [i for i, n in enumerate(COCO_91_CLASSES) if i > 0 and n != "N/A"]
# The zoo config's anchors: TF's multiple_grid_anchor_generator (aspect ratio 0.3333 as written there).
TF_DEFAULT_BOXES = DefaultBoxes(aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333), square_pixels=True)
_EXTRA = re.compile(rf"^{SCOPE}/layer_19_2_Conv2d_(\d+)_3x3_s2_(\d+)/weights$")
_YXHW_TO_XYWH = (1, 0, 3, 2)


def _box_weights(a: np.ndarray) -> np.ndarray:  # [1, 1, C, A*4] (ty, tx, th, tw) -> OIHW (x, y, w, h)
    w = _conv(a)
    order = (np.arange(w.shape[0]).reshape(-1, 4)[:, _YXHW_TO_XYWH]).reshape(-1)
    return w[order]


def _box_bias(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, 4)[:, _YXHW_TO_XYWH].reshape(-1)


def extra_depths(variables: dict[str, np.ndarray], path: Path) -> list[int]:
    """The four extra layers' depths (maps 2..5), from `layer_19_2_Conv2d_{i}_3x3_s2_{d}` names."""
    found = {}
    for name in variables:
        match = _EXTRA.match(name)
        if match:
            found[int(match.group(1))] = int(match.group(2))
    if sorted(found) != [2, 3, 4, 5]:
        raise WeightsError(
            f"{path}: expected the SSD extra layers layer_19_2_Conv2d_2..5 under {SCOPE}, found indices {sorted(found)}"
        )
    return [found[i] for i in (2, 3, 4, 5)]


def ssd_sources(depths: list[int], keep: list[int] | None = None) -> dict[str, Source]:
    """{mobilevision key: (TF name, layout)} of the whole detector; `keep`: the class outputs kept (background
    first), None all. With sigmoid scores every class is scored on its own, so dropping outputs changes no other."""

    def classes(a: np.ndarray) -> np.ndarray:  # [..., A * C] -> [..., A * len(keep)]
        if keep is None:
            return a
        return a.reshape(*a.shape[:-1], -1, len(COCO_91_CLASSES))[..., keep].reshape(*a.shape[:-1], -1)

    out = backbone_sources(19, prefix="backbone.features", scope=SCOPE)
    for k, depth in enumerate(depths):
        index, key = k + 2, f"head.extra.{k}"
        reduce = f"{SCOPE}/layer_19_1_Conv2d_{index}_1x1_{depth // 2}"
        conv = f"{SCOPE}/layer_19_2_Conv2d_{index}_3x3_s2_{depth}"
        out[f"{key}.0.0.weight"] = (f"{reduce}/weights", _conv)
        _bn(out, f"{key}.0.1", reduce)
        out[f"{key}.1.0.weight"] = (f"{conv}_depthwise/depthwise_weights", _depthwise)
        _bn(out, f"{key}.1.1", f"{conv}_depthwise")
        out[f"{key}.2.0.weight"] = (f"{conv}/weights", _conv)
        _bn(out, f"{key}.2.1", conv)
    for k in range(len(depths) + 2):
        scope = f"BoxPredictor_{k}"
        for ours, theirs, weights, bias in (
            ("box_heads", "BoxEncodingPredictor", _box_weights, _box_bias),
            ("cls_heads", "ClassPredictor", lambda a: _conv(classes(a)), classes),
        ):
            key = f"head.{ours}.{k}"
            out[f"{key}.0.0.weight"] = (f"{scope}/{theirs}_depthwise/depthwise_weights", _depthwise)
            _bn(out, f"{key}.0.1", f"{scope}/{theirs}_depthwise")
            out[f"{key}.1.weight"] = (f"{scope}/{theirs}/weights", weights)
            out[f"{key}.1.bias"] = (f"{scope}/{theirs}/biases", bias)
    return out


def detector_kwargs(
    variables: dict[str, np.ndarray], path: Path, width_mult: float | None, *, coco80: bool = False
) -> dict[str, Any]:
    """The `ssdlite_mobilenet_v2` builder arguments that reproduce the checkpoint's network and the zoo's
    inference settings (they travel in the converted checkpoint); `coco80`: 81 outputs (background and COCO 2017's
    80 categories), the 10 never-trained gap outputs dropped."""
    from mobilevision.models.backbones.mobilenet_v2 import make_divisible

    if "BoxPredictor_0/BoxEncodingPredictor_depthwise/depthwise_weights" not in variables:
        raise WeightsError(
            f"{path}: an object detection checkpoint without SSDLite's depthwise box predictor "
            "(BoxPredictor_0/BoxEncodingPredictor_depthwise); only ssdlite_mobilenet_v2 is converted"
        )
    width = infer_width(variables, path, scope=SCOPE)
    if width_mult is not None and abs(width_mult - width) > 1e-9:
        raise WeightsError(f"{path}: --width {width_mult} given, but the checkpoint's channels are width {width}")
    layer2 = variables.get(f"{SCOPE}/expanded_conv/project/weights")
    last = variables.get(f"{SCOPE}/Conv_1/weights")
    if layer2 is None or last is None:
        raise WeightsError(f"{path}: no {SCOPE}/expanded_conv/project or {SCOPE}/Conv_1 (not an SSD MobileNetV2)")
    min_channels = next(
        (m for m in (16, 8) if make_divisible(16 * width, 8, m) == int(layer2.shape[-1])),
        None,
    )
    if min_channels is None:
        raise WeightsError(f"{path}: layer 2 has {layer2.shape[-1]} channels, no min_depth (8, 16) gives that")
    bias = variables.get("BoxPredictor_0/ClassPredictor/biases")
    boxes = TF_DEFAULT_BOXES.num_anchors
    if bias is None or int(bias.shape[0]) % boxes[0]:
        raise WeightsError(f"{path}: no BoxPredictor_0/ClassPredictor/biases with {boxes[0]} boxes per location")
    classes = int(bias.shape[0]) // boxes[0]
    if classes != len(COCO_91_CLASSES):
        raise WeightsError(
            f"{path}: the class predictor has {classes} outputs per box, expected COCO's {len(COCO_91_CLASSES)} "
            "(90 category ids + background)"
        )
    return {
        "num_classes": 1 + len(COCO_80_IDS) if coco80 else classes,
        "width_mult": width,
        "extra_depths": extra_depths(variables, path),
        "backbone_kwargs": {"min_channels": min_channels, "last_channels": int(last.shape[-1])},
        "default_boxes": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(TF_DEFAULT_BOXES).items()},
        "classification": "sigmoid",
        "class_prior": None,
        "tf_exact": True,
        # The zoo's post_processing: every box above 1e-8 goes to NMS (no per-class cut before it), IoU 0.6,
        # 100 detections.
        "score_threshold": 1e-8,
        "nms_threshold": 0.6,
        "topk_candidates": 1_000_000,
        "detections_per_image": 100,
    }
