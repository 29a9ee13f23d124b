"""The segmenter (Mobile DeepLabv3): backbone on the second-last map + DeepLabv3 head, as a plain nn.Module."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.models.backbones import backbone_class
from mobilevision.models.backbones.base import Backbone
from mobilevision.models.heads.deeplabv3 import DeepLabV3Head
from mobilevision.models.normalize import Normalize
from mobilevision.models.registry import check_arguments
from mobilevision.models.tf_compat import TF_MEAN, TF_STD

# Mobile DeepLabv3's map on MobileNetV2: the second-last, 320-channel layer (the paper's MNet V2*). Other backbones
# declare theirs as DEFAULT_TAPS["deeplabv3"].
DEEPLAB_TAP: str = "layer_18"


class Segmenter(nn.Module):
    """Backbone tap -> DeepLabv3 head -> bilinear upsampling to the input size.

    Args:
        backbone: a feature extractor with exactly one tap (Mobile DeepLabv3: "layer_18", 320 channels, the paper's
            MNet V2*), built at the output stride wanted (16 or 8).
        head: a `DeepLabV3Head` built for that tap's channels.
        tf_exact: the TF reference's input scaling ([-1, 1]) and upsampling (bilinear, align_corners=True), for
            weights converted from it (the backbone carries its own `tf_exact`).

    Input: images [B, 3, H, W], RGB, uint8 or float in 0..255. Output: logits [B, num_classes, H, W].
    """

    def __init__(self, *, backbone: Backbone, head: DeepLabV3Head, tf_exact: bool = False) -> None:
        super().__init__()
        if len(backbone.out_taps) != 1:
            raise ValueError(f"the segmenter reads one backbone map, got taps {backbone.out_taps}")
        self.normalize = Normalize(TF_MEAN, TF_STD) if tf_exact else Normalize()
        self.align_corners = tf_exact
        self.backbone = backbone
        self.head = head
        self.tap = backbone.out_taps[0]
        # What the network was built (and trained) at: other output strides scale the atrous rates from these.
        self._built_at = (self.output_stride, tuple(head.atrous_rates))

    @property
    def num_classes(self) -> int:
        return self.head.classifier.out_channels

    @property
    def output_stride(self) -> int:
        return self.backbone.strides[self.tap]

    def set_output_stride(self, output_stride: int) -> None:
        """Run at another output stride, in place (the paper evaluates OS16-trained models at 8): the backbone
        dilates instead of striding, and the ASPP rates scale with the resolution (DeepLabv3: (6, 12, 18) at OS16
        are (12, 24, 36) at OS8). The weights do not change; `set_output_stride(built one)` restores the network."""
        built_stride, built_rates = self._built_at
        self.backbone.set_output_stride(output_stride)
        self.head.set_atrous_rates([rate * built_stride // output_stride for rate in built_rates])

    def head_logits(self, images: Tensor) -> Tensor:
        """Logits [B, num_classes, ceil(H/s), ceil(W/s)] at the output stride `s`, before the upsampling."""
        return self.head(self.backbone(self.normalize(images))[self.tap])

    def forward(self, images: Tensor) -> Tensor:
        logits = self.head_logits(images)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=self.align_corners)


def deeplabv3_mobilenet_v2(
    *,
    num_classes: int = 21,
    backbone: str = "mobilenet_v2",
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    output_stride: int = 16,
    atrous_rates: Sequence[int] = (),
    head_channels: int = 256,
    dropout: float = 0.1,
    zero_init_residual: bool = False,
    tap: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    tf_exact: bool = False,
) -> Segmenter:
    """Mobile DeepLabv3 (paper Table 7) on `backbone` (a name of `BACKBONES`). `atrous_rates=()` is the reduced,
    on-device head. `tap` (role or layer name) defaults to the backbone's `DEFAULT_TAPS["deeplabv3"]`: MobileNetV2's
    second-last map, MobileNetV3's last map (as torchvision's DeepLabv3 and LR-ASPP). `tf_exact` builds the TF
    reference's arithmetic (padding, epsilons, input scaling, upsampling) for converted weights; MobileNetV2 only."""
    check_arguments(
        "deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=width_mult, output_stride=output_stride
    )
    network = backbone_class(backbone)
    if tf_exact:
        if backbone != "mobilenet_v2":
            raise ValueError(f"tf_exact is for the TF reference's MobileNetV2, not {backbone!r}")
        backbone_kwargs = {**(backbone_kwargs or {}), "tf_exact": True}
    network = network(
        num_classes=None,
        width_mult=width_mult,
        output_stride=output_stride,
        out_taps=network.default_taps("deeplabv3") if tap is None else (tap,),
        weights=weights,
        zero_init_residual=zero_init_residual,
        **(backbone_kwargs or {}),
    )
    head = DeepLabV3Head(
        in_channels=network.out_channels[network.out_taps[0]],
        num_classes=num_classes,
        atrous_rates=atrous_rates,
        channels=head_channels,
        dropout=dropout,
    )
    return Segmenter(backbone=network, head=head, tf_exact=tf_exact)


def deeplabv3_mobilenet_v3_large(**kwargs: Any) -> Segmenter:
    """Mobile DeepLabv3 on MobileNetV3-Large's last map at output stride 16; see `deeplabv3_mobilenet_v2`."""
    return deeplabv3_mobilenet_v2(**{"backbone": "mobilenet_v3_large", **kwargs})
