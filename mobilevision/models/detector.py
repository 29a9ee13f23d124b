"""The detector: backbone taps + SSDLite head + default boxes + the post-processor, as a plain nn.Module.

It runs, exports and benchmarks without Lightning. Outputs follow torchvision's detection models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mobilevision.models.anchors import BoxCoder, DefaultBoxes
from mobilevision.models.backbones import backbone_class
from mobilevision.models.backbones.base import Backbone
from mobilevision.models.heads.ssd import EXTRA_DEPTHS, SSDHead
from mobilevision.models.normalize import Normalize
from mobilevision.models.postprocess import DetectionPostprocess
from mobilevision.models.registry import check_arguments
from mobilevision.models.tf_compat import TF_MEAN, TF_STD, make_tf_exact

# SSDLite's two backbone maps by role (paper section 6.2: MobileNetV2's layer-15 expansion at stride 16 and layer 19
# at stride 32); each backbone declares them as its DEFAULT_TAPS["ssdlite"].
SSD_TAPS: tuple[str, str] = ("stride16_expansion", "last")


def prior_bias(prior: float, num_classes: int, classification: str) -> list[float]:
    """Class biases (background first) under which a box is foreground with probability `prior`.

    softmax: the background logit log((1 - p) (C - 1) / p) against 0 for the C - 1 classes, which share p equally.
    sigmoid: each foreground class log(p / (1 - p)) and the background class the opposite.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"class_prior must be in (0, 1), got {prior}")
    odds = math.log((1.0 - prior) / prior)
    if classification == "softmax":
        return [odds + math.log(num_classes - 1)] + [0.0] * (num_classes - 1)
    return [odds] + [-odds] * (num_classes - 1)


class Detector(nn.Module):
    """SSD-style detector.

    Args:
        backbone: a feature extractor whose `out_taps` are the head's input maps, fine to coarse.
        head: the SSDLite (or SSD) head built for `backbone.out_channels` and `default_boxes.num_anchors`.
        default_boxes: the default-box recipe.
        score_threshold: per-class score a detection needs (after softmax).
        nms_threshold: IoU above which a lower-scoring box of the same class is suppressed.
        topk_candidates: boxes kept per class before NMS (bounds NMS time when many boxes pass the threshold).
        detections_per_image: cap on the final detections per image.
        classification: "softmax" or "sigmoid": how class logits become scores; must match the training loss.
        class_prior: the foreground probability the untrained model gives every default box (RetinaNet's prior
            pi; the TF reference's class bias init is the same idea). The class biases start there instead of at a
            uniform guess, so the first steps are not spent unlearning a flood of false positives. None keeps zero
            biases. Only an initialisation: loaded weights replace it.
        taps: the backbone maps the head reads (roles or layer names), in the head's order (its predicted maps, then
            its extra source if it has one); None reads all of the backbone's `out_taps`.
        tf_exact: the TF reference's arithmetic for weights converted from it (`mobilevision convert tf`): input
            scaled to [-1, 1], the head's `SAME` padding and BatchNorm epsilon (the backbone carries its own).

    Input: images [B, 3, H, W], RGB, uint8 or float in 0..255 (normalisation is inside the model).
    Output of `forward`: per image a dict `boxes` float [N, 4] (x1, y1, x2, y2 in input pixels), `scores` float [N],
    `labels` int64 [N] in 1..num_classes-1 (0 is background and never returned).
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: SSDHead,
        default_boxes: DefaultBoxes,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.6,
        topk_candidates: int = 200,
        detections_per_image: int = 100,
        box_coder: BoxCoder | None = None,
        classification: str = "softmax",
        class_prior: float | None = 0.01,
        taps: Sequence[str] | None = None,
        tf_exact: bool = False,
    ) -> None:
        super().__init__()
        if tuple(head.num_anchors) != tuple(default_boxes.num_anchors):
            raise ValueError(
                f"head expects {head.num_anchors} boxes per location, default boxes give {default_boxes.num_anchors}"
            )
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {classification!r}")
        self.classification = classification
        self.tf_exact = tf_exact
        self.normalize = Normalize(TF_MEAN, TF_STD) if tf_exact else Normalize()
        if tf_exact:
            make_tf_exact(head)
        self.backbone = backbone
        # Roles or layer names (checkpoints store either); kept as layer names.
        self.taps = tuple(backbone.tap_name(t) for t in taps) if taps is not None else backbone.out_taps
        unknown = [t for t in self.taps if t not in backbone.out_taps]
        if unknown:
            raise ValueError(f"taps {unknown} are not among the backbone's {backbone.out_taps}")
        self.head = head
        self.default_boxes = default_boxes
        self.box_coder = box_coder or BoxCoder()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.topk_candidates = topk_candidates
        self.detections_per_image = detections_per_image
        self._anchor_cache: dict[tuple, Tensor] = {}
        if class_prior is not None:
            head.set_class_bias(prior_bias(class_prior, head.num_classes, classification))

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_levels(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor, list[int]]:
        """The network's one forward path: head outputs, the default boxes they refer to, and how many of those
        boxes each feature map contributes, fine to coarse (boxes are ordered by map; ATSS assigns per map).

        Returns:
            ({"cls_logits": [B, A, C], "bbox_regression": [B, A, 4]}, anchors [A, 4] x1y1x2y2 in input pixels,
            level sizes [H_i * W_i * boxes per location_i] summing to A).
        """
        return self.detect(self.backbone(self.normalize(images)), images)

    def detect(self, features: dict[str, Tensor], images: Tensor) -> tuple[dict[str, Tensor], Tensor, list[int]]:
        """`forward_levels` from the backbone's maps of `images` (a model sharing its backbone pass calls this)."""
        maps = self.head.feature_maps([features[t] for t in self.taps])
        outputs = self.head.predict(maps)
        sizes = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]
        anchors = self.anchors(sizes, tuple(images.shape[-2:]), images.device)
        return outputs, anchors, [h * w * n for (h, w), n in zip(sizes, self.default_boxes.num_anchors)]

    def forward_raw(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """`forward_levels` without the level sizes: the exported and served surface (raw outputs, default boxes)."""
        outputs, anchors, _ = self.forward_levels(images)
        return outputs, anchors

    def anchors(
        self, feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int], device: torch.device
    ) -> Tensor:
        """Default boxes [A, 4] in input pixels for these map sizes (cached: they depend on shapes only)."""
        key = (tuple(feature_sizes), tuple(image_size), str(device))
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self.default_boxes.pixels(feature_sizes, image_size, device=device)
        if key not in self._anchor_cache:
            self._anchor_cache = {key: self.default_boxes.pixels(feature_sizes, image_size, device=device)}
        return self._anchor_cache[key]

    @property
    def postprocessor(self) -> DetectionPostprocess:
        """The one detection post-processing (validation, `Predictor`, export metadata) with this detector's
        parameters; built on each access, so a changed `score_threshold` or `topk_candidates` takes effect."""
        return DetectionPostprocess(
            score_threshold=float(self.score_threshold),
            nms_threshold=float(self.nms_threshold),
            topk_candidates=int(self.topk_candidates),
            detections_per_image=int(self.detections_per_image),
            box_coder_weights=tuple(float(w) for w in self.box_coder.weights),
            classification=self.classification,
        )

    def postprocess(
        self, outputs: dict[str, Tensor], anchors: Tensor, input_size: tuple[int, int]
    ) -> list[dict[str, Tensor]]:
        """Per image: scores, per-class top-k, threshold, decoding, clipping and class-wise NMS
        (`DetectionPostprocess`), in input pixels.

        Args:
            outputs: `cls_logits` [B, A, C] and `bbox_regression` [B, A, 4]; anchors: [A, 4] in input pixels.
        """
        post = self.postprocessor
        return [
            post(logits, regression, anchors, input_size=input_size)
            for logits, regression in zip(outputs["cls_logits"], outputs["bbox_regression"])
        ]

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        outputs, anchors = self.forward_raw(images)
        return self.postprocess(outputs, anchors, (images.shape[-2], images.shape[-1]))


def detector_from_options(
    *,
    separable: bool,
    backbone: str,
    num_classes: int,
    width_mult: float,
    weights: str | os.PathLike[str] | None,
    default_boxes: DefaultBoxes | dict[str, Any] | None,
    extra_depths: Sequence[int],
    taps: Sequence[str] | None,
    zero_init_residual: bool,
    output_stride: int = 32,
    backbone_kwargs: dict[str, Any] | None = None,
    **detector_kwargs: Any,
) -> Detector:
    """The detector of the builders below (and of the joint model's, at output stride 16)."""
    check_arguments("detector", num_classes=num_classes, width_mult=width_mult)
    if detector_kwargs.get("tf_exact"):
        if backbone != "mobilenet_v2":
            raise ValueError(f"tf_exact is for the TF reference's MobileNetV2, not {backbone!r}")
        backbone_kwargs = {**(backbone_kwargs or {}), "tf_exact": True}
    if isinstance(default_boxes, dict):  # as stored in checkpoints: plain values
        default_boxes = DefaultBoxes(**{k: tuple(v) if isinstance(v, list) else v for k, v in default_boxes.items()})
    network = backbone_class(backbone)
    network = network(
        num_classes=None,
        width_mult=width_mult,
        output_stride=output_stride,
        out_taps=network.default_taps("ssdlite") if taps is None else tuple(taps),
        weights=weights,
        zero_init_residual=zero_init_residual,
        **(backbone_kwargs or {}),
    )
    default_boxes = default_boxes or DefaultBoxes(num_maps=len(network.out_taps) + len(extra_depths))
    if default_boxes.num_maps != len(network.out_taps) + len(extra_depths):
        raise ValueError(
            f"default_boxes.num_maps is {default_boxes.num_maps} but there are {len(network.out_taps)} taps and "
            f"{len(extra_depths)} extra layers"
        )
    head = SSDHead(
        in_channels=[network.out_channels[t] for t in network.out_taps],
        num_anchors=default_boxes.num_anchors,
        num_classes=num_classes,
        extra_depths=extra_depths,
        separable=separable,
    )
    return Detector(backbone=network, head=head, default_boxes=default_boxes, **detector_kwargs)


def ssdlite_mobilenet_v2(
    *,
    num_classes: int = 91,
    backbone: str = "mobilenet_v2",
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    default_boxes: DefaultBoxes | dict[str, Any] | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    taps: Sequence[str] | None = None,
    zero_init_residual: bool = False,
    **detector_kwargs: Any,
) -> Detector:
    """MobileNetV2 (or `backbone`, a name of `BACKBONES`) + SSDLite (paper Table 6). `num_classes` counts the
    background (COCO: 81, or 91 with id gaps).

    `taps` are the backbone maps the head reads, fine to coarse, by role or layer name; None is the backbone's
    `DEFAULT_TAPS["ssdlite"]` (the paper's: the stride-16 expansion and the last map). The extra layers grow from the
    last one. Adding a stride-8 map ("stride8_expansion") helps small objects. `zero_init_residual` starts residual
    blocks as identities (see `MobileNetV2`), for training from random weights. `backbone_kwargs` (in
    `detector_kwargs`) go to the backbone (e.g. MobileNetV3's `reduced_tail`).
    """
    return detector_from_options(
        separable=True,
        backbone=backbone,
        num_classes=num_classes,
        width_mult=width_mult,
        weights=weights,
        default_boxes=default_boxes,
        extra_depths=extra_depths,
        taps=taps,
        zero_init_residual=zero_init_residual,
        **detector_kwargs,
    )


def ssdlite_mobilenet_v3_large(**kwargs: Any) -> Detector:
    """MobileNetV3-Large + SSDLite (torchvision's `ssdlite320_mobilenet_v3_large` taps); see `ssdlite_mobilenet_v2`."""
    return ssdlite_mobilenet_v2(**{"backbone": "mobilenet_v3_large", **kwargs})


def ssd_mobilenet_v2(
    *,
    num_classes: int = 91,
    backbone: str = "mobilenet_v2",
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    default_boxes: DefaultBoxes | dict[str, Any] | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    taps: Sequence[str] | None = None,
    zero_init_residual: bool = False,
    **detector_kwargs: Any,
) -> Detector:
    """MobileNetV2 + classic SSD head with regular 3x3 convolutions (the paper's Table 5 comparison)."""
    return detector_from_options(
        separable=False,
        backbone=backbone,
        num_classes=num_classes,
        width_mult=width_mult,
        weights=weights,
        default_boxes=default_boxes,
        extra_depths=extra_depths,
        taps=taps,
        zero_init_residual=zero_init_residual,
        **detector_kwargs,
    )
