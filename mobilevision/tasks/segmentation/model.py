"""The segmenter (Mobile DeepLabv3): backbone on the second-last map + DeepLabv3 head, as a plain nn.Module."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.backbones.mobilenet_v2 import MobileNetV2
from mobilevision.heads.deeplabv3 import DeepLabV3Head
from mobilevision.transforms import Normalize


class Segmenter(nn.Module):
    """Backbone tap -> DeepLabv3 head -> bilinear upsampling to the input size.

    Args:
        backbone: a feature extractor with exactly one tap (Mobile DeepLabv3: "layer_18", 320 channels, the paper's
            MNet V2*), built at the output stride wanted (16 or 8).
        head: a `DeepLabV3Head` built for that tap's channels.

    Input: images [B, 3, H, W], RGB, uint8 or float in 0..255. Output: logits [B, num_classes, H, W].
    """

    def __init__(self, *, backbone: MobileNetV2, head: DeepLabV3Head) -> None:
        super().__init__()
        if len(backbone.out_taps) != 1:
            raise ValueError(f"the segmenter reads one backbone map, got taps {backbone.out_taps}")
        self.normalize = Normalize()
        self.backbone = backbone
        self.head = head
        self.tap = backbone.out_taps[0]

    @property
    def num_classes(self) -> int:
        return self.head.classifier.out_channels

    @property
    def output_stride(self) -> int:
        return self.backbone.strides[self.tap]

    def forward(self, images: Tensor) -> Tensor:
        logits = self.head(self.backbone(self.normalize(images))[self.tap])
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
