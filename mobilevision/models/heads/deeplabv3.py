"""The DeepLabv3 head of Mobile DeepLabv3 (paper section 6.3): ASPP, or the paper's reduced form.

Branches on one backbone map: a 1x1 conv, one 3x3 atrous conv per entry of `atrous_rates`, and image-level features
(global average pool, 1x1 conv, broadcast back). They are concatenated, projected by a 1x1 conv and classified by a
1x1 conv. `atrous_rates=()` is the paper's on-device model (Table 7, bold row): only the 1x1 and image-pooling branches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation


class _ImagePooling(nn.Module):
    # Image-level features (DeepLabv3 section 3.3): global context, so a small output stride still sees the image.
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv2dNormActivation(in_channels, out_channels, kernel_size=1, activation_layer=nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(x.mean(dim=(2, 3), keepdim=True))
        # A 1x1 source: expand is an exact, free broadcast (what bilinear upsampling of one pixel computes).
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class DeepLabV3Head(nn.Module):
    """ASPP head and classifier.

    Args:
        in_channels: channels of the backbone map (Mobile DeepLabv3: 320, layer 18, the second-last map).
        num_classes: output classes (VOC: 21, background included).
        atrous_rates: one 3x3 atrous branch per rate; () for the reduced head, (6, 12, 18) for full ASPP at output
            stride 16 (double them at output stride 8).
        channels: width of every branch and of the projection (256 in the paper).
        dropout: before the classifier, as in the TF reference's training recipe.

    Forward: [B, in_channels, h, w] -> logits [B, num_classes, h, w] at the backbone map's resolution; the model
    upsamples them to the input size.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        atrous_rates: Sequence[int] = (),
        channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if any(r < 1 for r in atrous_rates):
            raise ValueError(f"atrous_rates must be positive, got {tuple(atrous_rates)}")
        branches: list[nn.Module] = [
            Conv2dNormActivation(in_channels, channels, kernel_size=1, activation_layer=nn.ReLU)
        ]
        branches += [
            Conv2dNormActivation(
                in_channels, channels, kernel_size=3, dilation=rate, padding=rate, activation_layer=nn.ReLU
            )
            for rate in atrous_rates
        ]
        branches.append(_ImagePooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = Conv2dNormActivation(channels * len(branches), channels, kernel_size=1, activation_layer=nn.ReLU)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.atrous_rates = tuple(atrous_rates)

    def set_class_bias(self, bias: Sequence[float]) -> None:
        """Start the classifier's logits at `bias` (one value per class), e.g. the log of a class prior."""
        if len(bias) != self.classifier.out_channels:
            raise ValueError(f"bias needs {self.classifier.out_channels} values (one per class), got {len(bias)}")
        assert self.classifier.bias is not None
        with torch.no_grad():
            self.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def set_atrous_rates(self, rates: Sequence[int]) -> None:
        """Change the atrous rates in place, e.g. doubled when evaluating at output stride 8 a head trained at 16."""
        if len(rates) != len(self.atrous_rates):
            raise ValueError(f"the head has {len(self.atrous_rates)} atrous branches, got rates {tuple(rates)}")
        for branch, rate in zip(self.branches[1 : 1 + len(rates)], rates):
            conv = branch[0]
            conv.dilation, conv.padding = (rate, rate), (rate, rate)
        self.atrous_rates = tuple(rates)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.dropout(self.project(x)))


# The public name, for code outside models/ (the LiteRT conversion rewrites its broadcast).
ImagePooling = _ImagePooling
