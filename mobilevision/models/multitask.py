"""`MultiTaskModel`: one backbone pass (MobileNetV2 by default), two answers (SSDLite boxes and a DeepLabv3 mask).

Output stride. Mobile DeepLabv3 wants the second-last map (layer 18) at output stride 16; SSDLite reads the layer-15
expansion at stride 16 and layer 19 at stride 32. The shared backbone runs at output stride 16 (the last stride-2
block dilates instead, as in `deeplabv3_mobilenet_v2`) and stops at layer 18, which both heads read: the
segmentation head directly, the detector as its stride-16 map, with its extra layers grown from it (the first one,
stride 2, takes layer 19's place at stride 32; one more at the coarse end keeps six maps). The detector's maps
keep the standalone detector's sizes (16, 32, ..., at 320: 20x20 down to 1x1). Layer 19 at stride 16 would cost
four times what it costs at 32, and the layer-15 expansion (576 channels) is wider and shallower than layer 18
(320) at the same stride: predicting on layer 18 makes the detector's share of the joint pass smaller
(`mobilevision benchmark multitask`, docs/benchmarks.md). The alternative, dilation on the segmentation branch
only, would run layers 15 to 18 twice (once per stride): the layers the two heads most want to share.

The model composes a `Detector` (its default boxes, decoding and post-processing: the detection loss and evaluation
use them as they are) and a segmentation head on the same backbone pass. The output stride is fixed at 16:
evaluating the segmentation at 8 would move the detector's maps too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.models.anchors import DefaultBoxes
from mobilevision.models.backbones import backbone_class
from mobilevision.models.detector import Detector, detector_from_options
from mobilevision.models.heads.deeplabv3 import DeepLabV3Head
from mobilevision.models.postprocess import DetectionPostprocess
from mobilevision.models.registry import check_arguments

# The map both heads read on MobileNetV2: the segmentation head, and the detector as its last (stride-16) map.
# Other backbones declare theirs as DEFAULT_TAPS["multitask"] (its last entry is the shared map).
SHARED_TAP: str = "layer_18"
MULTITASK_TAPS: tuple[str, ...] = ("second_last",)
# The first extra layer takes layer 19's place at stride 32, then SSDLite's (TF reference: 512, 256, 256, 128)
# shifted by one map, so there are six maps as in SSDLite.
MULTITASK_EXTRA_DEPTHS: tuple[int, ...] = (512, 256, 256, 128, 64)
OUTPUT_STRIDE = 16


class MultiTaskModel(nn.Module):
    """SSDLite and Mobile DeepLabv3 on one backbone pass (MobileNetV2 by default).

    Args:
        detector: the detector, its backbone built at output stride 16 with `seg_tap` among its `out_taps`.
        seg_head: the DeepLabv3 head on `seg_tap`.
        seg_tap: the map the segmentation head reads, role or layer name (MobileNetV2: layer 18, the second-last).

    The detector's modules are registered here under their own names (`normalize`, `backbone`, `head`), beside
    `seg_head`: the state_dict is the flat one joint checkpoints have always had, and the backbone is one module run
    once. The detector object itself is held unregistered, as the owner of the default boxes, the decoding and the
    post-processing.

    `num_classes` is the detector's (background included); `seg_num_classes` the segmentation head's (its own label
    space: COCO's 80 objects for boxes and VOC's 20 for the mask in the COCO + VOC recipe).

    Input: images [B, 3, H, W], RGB, uint8 or float in 0..255. `forward_all` returns everything of one pass;
    `forward` gives per image the detector's dict plus `mask` int64 [H, W] (the argmax at the input size).
    """

    def __init__(self, *, detector: Detector, seg_head: DeepLabV3Head, seg_tap: str = SHARED_TAP) -> None:
        super().__init__()
        backbone = detector.backbone
        seg_tap = backbone.tap_name(seg_tap)
        if seg_tap not in backbone.out_taps:
            raise ValueError(f"seg_tap {seg_tap!r} is not among the backbone's {backbone.out_taps}")
        if backbone.strides[seg_tap] != OUTPUT_STRIDE:
            raise ValueError(
                f"the segmentation map must be at output stride {OUTPUT_STRIDE}, "
                f"{seg_tap!r} is at {backbone.strides[seg_tap]}"
            )
        self.normalize, self.backbone, self.head = detector.normalize, backbone, detector.head
        self.seg_head = seg_head
        self.seg_tap = seg_tap
        self.__dict__["detector"] = detector  # not a submodule: its modules are the ones registered above

    @property
    def num_classes(self) -> int:
        return self.detector.num_classes

    @property
    def taps(self) -> tuple[str, ...]:
        """The detector's backbone maps, fine to coarse (ending with `seg_tap`)."""
        return self.detector.taps

    @property
    def classification(self) -> str:
        return self.detector.classification

    @property
    def default_boxes(self) -> DefaultBoxes:
        return self.detector.default_boxes

    @property
    def postprocessor(self) -> DetectionPostprocess:
        return self.detector.postprocessor

    @property
    def seg_num_classes(self) -> int:
        return self.seg_head.classifier.out_channels

    @property
    def output_stride(self) -> int:
        return self.backbone.strides[self.seg_tap]

    def segment(self, features: dict[str, Tensor], images: Tensor) -> Tensor:
        """Segmentation logits [B, seg_num_classes, H, W] at the input size from the backbone's maps."""
        logits = self.seg_head(features[self.seg_tap])
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward_all(
        self, images: Tensor, *, upsample: bool = True
    ) -> tuple[dict[str, Tensor], Tensor, list[int], Tensor]:
        """One backbone pass: the detector's `forward_levels` (head outputs, default boxes, level sizes) and the
        segmentation logits [B, seg_num_classes, H, W] (at the head's stride with `upsample=False`: what the
        post-processing upsamples once, straight to the image)."""
        features = self.backbone(self.normalize(images))
        outputs, anchors, level_sizes = self.detector.detect(features, images)
        logits = self.segment(features, images) if upsample else self.seg_head(features[self.seg_tap])
        return outputs, anchors, level_sizes, logits

    def postprocess(
        self, outputs: dict[str, Tensor], anchors: Tensor, input_size: tuple[int, int]
    ) -> list[dict[str, Tensor]]:
        """The detector's post-processing (`Detector.postprocess`)."""
        return self.detector.postprocess(outputs, anchors, input_size)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        outputs, anchors, _, logits = self.forward_all(images)
        detections = self.postprocess(outputs, anchors, (images.shape[-2], images.shape[-1]))
        return [{**d, "mask": mask} for d, mask in zip(detections, logits.argmax(1))]


def ssdlite_deeplabv3_mobilenet_v2(
    *,
    num_classes: int = 91,
    seg_num_classes: int = 21,
    backbone: str = "mobilenet_v2",
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    default_boxes: DefaultBoxes | dict[str, Any] | None = None,
    taps: Sequence[str] | None = None,
    extra_depths: Sequence[int] = MULTITASK_EXTRA_DEPTHS,
    atrous_rates: Sequence[int] = (),
    head_channels: int = 256,
    dropout: float = 0.1,
    zero_init_residual: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    **detector_kwargs: Any,
) -> MultiTaskModel:
    """SSDLite + Mobile DeepLabv3 on one `backbone` (a name of `BACKBONES`) at output stride 16 (see the module
    docstring).

    `num_classes` counts the detector's classes with background (COCO: 81), `seg_num_classes` the segmentation
    head's (VOC: 21). `taps` are the detector's backbone maps (roles or layer names), fine to coarse, ending with the
    shared map (None: the backbone's `DEFAULT_TAPS["multitask"]`, MobileNetV2's layer 18; add "stride8_expansion" in
    front for small objects); its extra layers grow from the shared map, the first taking the stride-32 map's place.
    `atrous_rates=()` is the reduced DeepLabv3 head (paper Table 7).
    """
    check_arguments("ssdlite_deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=width_mult)
    check_arguments("ssdlite_deeplabv3_mobilenet_v2", num_classes=seg_num_classes, width_mult=width_mult)
    network = backbone_class(backbone)
    shared = network.default_taps("multitask")[-1]
    taps = network.default_taps("multitask") if taps is None else tuple(network.tap_name(t) for t in taps)
    if not taps or taps[-1] != shared:
        raise ValueError(
            f"the detector's taps must end with {shared} (its extra layers grow from the map the "
            f"segmentation head reads), got {list(taps)}"
        )
    detector = detector_from_options(
        separable=True,
        backbone=backbone,
        num_classes=num_classes,
        width_mult=width_mult,
        weights=weights,
        default_boxes=default_boxes,
        extra_depths=extra_depths,
        taps=taps,
        zero_init_residual=zero_init_residual,
        output_stride=OUTPUT_STRIDE,
        backbone_kwargs=backbone_kwargs,
        **detector_kwargs,
    )
    seg_head = DeepLabV3Head(
        in_channels=detector.backbone.out_channels[shared],
        num_classes=seg_num_classes,
        atrous_rates=atrous_rates,
        channels=head_channels,
        dropout=dropout,
    )
    return MultiTaskModel(detector=detector, seg_head=seg_head, seg_tap=shared)


def ssdlite_deeplabv3_mobilenet_v3_large(**kwargs: Any) -> MultiTaskModel:
    """SSDLite + Mobile DeepLabv3 on one MobileNetV3-Large (its last map at stride 16); see the V2 builder."""
    return ssdlite_deeplabv3_mobilenet_v2(**{"backbone": "mobilenet_v3_large", **kwargs})
