"""The SSD prediction head, separable (SSDLite, paper section 6.2) or with regular convolutions (classic SSD).

The head takes channel numbers, not a backbone: two input maps (SSDLite's are MobileNetV2's layer-15 expansion at
output stride 16 and layer 19 at output stride 32), four extra layers on top of the second, and box/class predictors on
all six maps. It returns raw tensors; matching, the loss, decoding and NMS live in `mobilevision.tasks.detection`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

# Extra layer depths of the TF reference (ssd_mobilenet_v2 feature map generator: 512, 256, 256, 128).
EXTRA_DEPTHS: tuple[int, ...] = (512, 256, 256, 128)


def _separable(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    # Section 6.2: a regular 3x3 conv replaced by 3x3 depthwise + BN + ReLU6 and a 1x1 projection + BN + ReLU6.
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, stride=stride, groups=in_channels, activation_layer=nn.ReLU6),
        Conv2dNormActivation(in_channels, out_channels, kernel_size=1, activation_layer=nn.ReLU6),
    )


def _extra_layer(in_channels: int, out_channels: int, *, separable: bool) -> nn.Sequential:
    # 1x1 to half the output depth, then a stride-2 3x3 (separable for SSDLite) to the output depth.
    mid = out_channels // 2
    reduce = Conv2dNormActivation(in_channels, mid, kernel_size=1, activation_layer=nn.ReLU6)
    if separable:
        return nn.Sequential(reduce, *_separable(mid, out_channels, stride=2))
    return nn.Sequential(reduce, Conv2dNormActivation(mid, out_channels, stride=2, activation_layer=nn.ReLU6))


def _predictor(in_channels: int, out_channels: int, *, separable: bool) -> nn.Sequential:
    # SSDLite: 3x3 depthwise + BN + ReLU6, then a 1x1 conv with bias (no BN, no activation): raw scores or offsets.
    # SSD: one regular 3x3 conv with bias.
    if separable:
        return nn.Sequential(
            Conv2dNormActivation(in_channels, in_channels, groups=in_channels, activation_layer=nn.ReLU6),
            nn.Conv2d(in_channels, out_channels, 1),
        )
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1))


class SSDHead(nn.Module):
    """Extra feature layers and per-map predictors.

    Args:
        in_channels: channels of the backbone maps the head is attached to, fine to coarse (SSDLite: 576, 1280).
        num_anchors: default boxes per location on each of the `len(in_channels) + len(extra_depths)` maps.
        num_classes: classes including background (index 0).
        extra_depths: output depth of each extra layer, built on the last backbone map.
        separable: True for SSDLite (depthwise-separable convolutions in the extra layers and predictors); False
            for classic SSD (regular 3x3 convolutions), the paper's Table 5 comparison.

    Forward: a sequence of maps [B, in_channels[i], H_i, W_i] -> dict
        `cls_logits`: [B, A, num_classes] and `bbox_regression`: [B, A, 4], where A = sum_i H_i * W_i * num_anchors[i]
        over all maps (backbone then extra), locations in row-major order and anchors innermost, matching
        `mobilevision.models.anchors.DefaultBoxes`.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        num_anchors: Sequence[int],
        num_classes: int,
        extra_depths: Sequence[int] = EXTRA_DEPTHS,
        separable: bool = True,
    ) -> None:
        super().__init__()
        if len(num_anchors) != len(in_channels) + len(extra_depths):
            raise ValueError(
                f"num_anchors has {len(num_anchors)} entries but there are {len(in_channels)} backbone maps and "
                f"{len(extra_depths)} extra layers"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.num_anchors = tuple(num_anchors)
        self.extra = nn.ModuleList()
        channels = list(in_channels)
        for depth in extra_depths:
            self.extra.append(_extra_layer(channels[-1], depth, separable=separable))
            channels.append(depth)
        self.map_channels = tuple(channels)
        self.cls_heads = nn.ModuleList(
            _predictor(c, a * num_classes, separable=separable) for c, a in zip(channels, num_anchors)
        )
        self.box_heads = nn.ModuleList(_predictor(c, a * 4, separable=separable) for c, a in zip(channels, num_anchors))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight) if m.groups == 1 else nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def set_class_bias(self, bias: Sequence[float]) -> None:
        """Start every default box's class logits at `bias` (one value per class), e.g. a background prior."""
        if len(bias) != self.num_classes:
            raise ValueError(f"bias needs {self.num_classes} values (one per class), got {len(bias)}")
        values = torch.as_tensor(bias, dtype=torch.float32)
        with torch.no_grad():
            for predictor in self.cls_heads:
                last = predictor[-1]
                assert isinstance(last, nn.Conv2d) and last.bias is not None
                last.bias.copy_(values.repeat(last.out_channels // self.num_classes))

    def feature_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        """The backbone maps followed by the extra layers' outputs."""
        maps = list(features)
        for layer in self.extra:
            maps.append(layer(maps[-1]))
        return maps

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        return self.predict(self.feature_maps(features))

    def predict(self, maps: Sequence[Tensor]) -> dict[str, Tensor]:
        """Predictions on all maps (backbone + extra), see the class docstring for shapes."""
        cls_out, box_out = [], []
        for x, cls_head, box_head in zip(maps, self.cls_heads, self.box_heads):
            batch = x.shape[0]
            # [B, A*K, H, W] -> [B, H, W, A*K] -> [B, H*W*A, K]: locations row-major, anchors innermost.
            cls_out.append(cls_head(x).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes))
            box_out.append(box_head(x).permute(0, 2, 3, 1).reshape(batch, -1, 4))
        return {"cls_logits": torch.cat(cls_out, 1), "bbox_regression": torch.cat(box_out, 1)}
