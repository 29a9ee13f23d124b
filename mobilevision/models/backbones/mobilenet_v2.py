"""MobileNetV2 (Sandler et al., 2018, arXiv 1801.04381): inverted residuals with linear bottlenecks.

The network is Table 2 of the paper. Module names and parameter shapes follow `torchvision.models.mobilenet_v2`
(`features.N`, `classifier.1`), so torchvision's ImageNet weights load with `strict=True`.

Feature taps are named after the TensorFlow reference's layer numbering, which the paper's text uses
("the expansion of layer 15"): `layer_1` is the stem conv, `layer_2` .. `layer_18` the 17 inverted residuals and
`layer_19` the final 1x1 conv. So `features[i]` is `layer_{i+1}`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from mobilevision.models.backbones.base import Backbone, check_output_stride, init_weights
from mobilevision.models.backbones.base import (
    load_state_dict_file as load_state_dict_file,
)  # re-exported: older imports
from mobilevision.models.tf_compat import make_tf_exact

# Table 2: expansion factor t, output channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Taps a head can ask for, fine to coarse: the output of every layer, and the 1x1 expansion inside every inverted
# residual that has one (layers 3 to 18). "layer_15/expansion" (576 channels at width 1.0, output stride 16) is
# SSDLite's first feature map (paper section 6.2); "layer_18" (320 channels) is Mobile DeepLabv3's input.
TAP_NAMES: tuple[str, ...] = tuple(
    name for n in range(1, 20) for name in ((f"layer_{n}/expansion",) if 3 <= n <= 18 else ()) + (f"layer_{n}",)
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below `value` (reference rounding)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def stride_plan(output_stride: int) -> list[tuple[int, int]]:
    """(stride, dilation) of the depthwise conv of each of the 17 inverted residuals for an output stride.

    Past the output stride a stride-2 block keeps the resolution and the dilation doubles from the next block on
    (the TF reference's order: the converted block itself keeps the previous rate), so receptive fields are kept.
    """
    plan, current, dilation = [], 2, 1
    for _, _, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride, block_dilation = (s if i == 0 else 1), dilation
            if stride == 2 and current >= output_stride:
                stride, dilation = 1, dilation * 2
            current *= stride
            plan.append((stride, block_dilation))
    return plan


class InvertedResidual(nn.Module):
    """Inverted residual with a linear bottleneck (paper section 3.3, Figure 3b).

    1x1 expansion + BN + ReLU6 (absent when `expand_ratio` is 1), 3x3 depthwise + BN + ReLU6, then a *linear* 1x1
    projection + BN: no activation after the projection, so block outputs take negative values (section 3.2 argues
    a ReLU here would destroy information in the low-dimensional bottleneck). The shortcut joins the bottlenecks when
    the block keeps resolution and width.

    Shapes: [B, in_channels, H, W] -> [B, out_channels, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int, dilation: int = 1
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.stride = stride
        self.out_channels = out_channels
        self.hidden_channels = hidden
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(in_channels, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(
                hidden, hidden, stride=stride, dilation=dilation, groups=hidden, activation_layer=nn.ReLU6
            ),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        # One Sequential named `conv`: the same state_dict keys as torchvision's block.
        self.conv = nn.Sequential(*layers)

    @property
    def has_expansion(self) -> bool:
        return len(self.conv) == 4

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)

    def forward_with_expansion(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Like `forward`, also returning the expansion output [B, hidden, H, W] (the tap SSDLite uses)."""
        if not self.has_expansion:
            raise ValueError("this block has expand_ratio 1 and no expansion layer to tap")
        expanded = self.conv[0](x)
        out = self.conv[3](self.conv[2](self.conv[1](expanded)))
        return (x + out if self.use_res_connect else out), expanded


class MobileNetV2(Backbone):
    """MobileNetV2 as a classifier (`num_classes` set) or as a feature extractor (`out_taps` set).

    Args:
        num_classes: classifier outputs; None builds no classifier (feature extractor).
        width_mult: the paper's width multiplier (0.35 to 1.4); channels are rounded to multiples of 8 and the last
            layer keeps 1280 channels below 1.0, as in the paper.
        output_stride: 32, 16 or 8. Strides past this are replaced by dilation in the later blocks (DeepLab's atrous
            trick), so feature maps keep the resolution and the receptive fields.
        out_taps: taps returned by `forward` as a dict, fine to coarse: roles of `ROLES` or names of `TAP_NAMES`
            (stored as names). The network is truncated after the deepest tap, so unused layers cost nothing. None
            returns classifier logits.
        weights: None, a torchvision weight name (e.g. "IMAGENET1K_V1", "DEFAULT", needs internet once), or a local
            file path (a state_dict, loaded with `weights_only=True`). Loaded into the classifier form, then the
            unused layers are dropped; in feature-extractor form the classifier weights are ignored.
        dropout: classifier dropout.
        zero_init_residual: start the last BatchNorm of every residual block at gamma 0, so each block begins as
            the identity (Goyal et al. 2017, "zero gamma"), which speeds up training from random weights (measured:
            docs/design-notes.md). Pretrained `weights` overwrite it.
        tf_exact: TF's `SAME` padding and BatchNorm epsilon 1e-3 (`mobilevision.models.tf_compat`), for weights
            converted from the TF reference; the state_dict is unchanged.
        min_channels: the least channels a layer's output gets after the width multiplier (the TF reference's
            `min_depth`: 8, and 16 in the object detection API's feature extractors); None is `round_nearest`.
        last_channels: channels of the final 1x1 conv (layer 19); None keeps 1280 below width 1.0 (the paper's
            classifier). The object detection API's base scales it with the width (e.g. 448 at 0.35).
    """

    TAP_NAMES = TAP_NAMES
    # Paper section 6.2: SSDLite reads the layer-15 expansion (576 ch, stride 16) and layer 19 (1280 ch, stride 32);
    # section 6.3: Mobile DeepLabv3 reads the second-last, 320-channel map (layer 18).
    ROLES = {
        "stride8_expansion": "layer_8/expansion",
        "stride16_expansion": "layer_15/expansion",
        "second_last": "layer_18",
        "last": "layer_19",
    }
    DEFAULT_TAPS = {
        "ssdlite": ("stride16_expansion", "last"),
        "deeplabv3": ("second_last",),
        # The joint model shares layer 18 at output stride 16 (see mobilevision.models.multitask).
        "multitask": ("second_last",),
    }
    WEIGHTS_ENUM = "MobileNet_V2_Weights"

    def __init__(
        self,
        *,
        num_classes: int | None = 1000,
        width_mult: float = 1.0,
        output_stride: int = 32,
        out_taps: Sequence[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        dropout: float = 0.2,
        round_nearest: int = 8,
        zero_init_residual: bool = False,
        tf_exact: bool = False,
        min_channels: int | None = None,
        last_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        if not 0.1 <= width_mult <= 2.0:
            raise ValueError(f"width_mult must be between 0.1 and 2.0, got {width_mult}")
        if num_classes is None and not out_taps:
            raise ValueError("give num_classes (classifier) or out_taps (feature extractor)")
        if out_taps is not None:
            out_taps = self.resolve_taps(out_taps)
        self.width_mult = width_mult
        self.output_stride = output_stride
        self.out_taps: tuple[str, ...] = tuple(out_taps or ())

        plan = stride_plan(output_stride)
        input_channels = make_divisible(32 * width_mult, round_nearest, min_channels)
        self.last_channels = last_channels or make_divisible(1280 * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [Conv2dNormActivation(3, input_channels, stride=2, activation_layer=nn.ReLU6)]
        channels = {"layer_1": input_channels}
        strides = {"layer_1": 2}
        current_stride = 2
        for t, c, n, _ in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(c * width_mult, round_nearest, min_channels)
            for _ in range(n):
                stride, block_dilation = plan[len(layers) - 1]
                block = InvertedResidual(
                    input_channels, out_channels, stride=stride, expand_ratio=t, dilation=block_dilation
                )
                name = f"layer_{len(layers) + 1}"
                if block.has_expansion:
                    channels[f"{name}/expansion"] = block.hidden_channels
                    strides[f"{name}/expansion"] = current_stride
                current_stride *= stride
                channels[name], strides[name] = out_channels, current_stride
                layers.append(block)
                input_channels = out_channels
        layers.append(
            Conv2dNormActivation(input_channels, self.last_channels, kernel_size=1, activation_layer=nn.ReLU6)
        )
        channels["layer_19"], strides["layer_19"] = self.last_channels, current_stride
        self.features = nn.Sequential(*layers)

        self.classifier: nn.Sequential | None = None
        if num_classes is not None:
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channels, num_classes))
        self._init_weights(zero_init_residual=zero_init_residual)
        self.tf_exact = tf_exact
        if tf_exact:
            make_tf_exact(self)
        if weights is not None:
            self.load_pretrained(weights)

        # Declared feature metadata: heads read these, never guess.
        self.out_channels: dict[str, int] = {t: channels[t] for t in self.out_taps}
        self.strides: dict[str, int] = {t: strides[t] for t in self.out_taps}
        if self.out_taps:
            deepest = max(self._layer_index(t) for t in self.out_taps)
            # Drop what no tap needs (e.g. the 1280-channel layer for DeepLab on layer 18), and the classifier.
            self.features = self.features[: deepest + 1]
            if num_classes is None:
                self.classifier = None

    def _init_weights(self, *, zero_init_residual: bool) -> None:
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, InvertedResidual) and m.use_res_connect:
                    nn.init.zeros_(m.conv[-1].weight)

    def set_output_stride(self, output_stride: int) -> None:
        """Change the output stride in place (e.g. train at 16, evaluate at 8 as in the paper's Table 7).

        Only strides, dilations and paddings of the depthwise convolutions change; the weights are the same.
        """
        check_output_stride(output_stride)
        plan = stride_plan(output_stride)
        factor = {}
        for index, (stride, dilation) in enumerate(plan[: len(self.features) - 1]):
            depthwise = self.features[index + 1].conv[-3][0]
            depthwise.stride, depthwise.dilation, depthwise.padding = (
                (stride, stride),
                (dilation, dilation),
                (dilation, dilation),
            )
        current = 2
        for index, (stride, _) in enumerate(plan):
            name = f"layer_{index + 2}"
            factor[f"{name}/expansion"] = current
            current *= stride
            factor[name] = current
        factor["layer_1"], factor["layer_19"] = 2, current
        self.strides = {t: factor[t] for t in self.out_taps}
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """[B, 3, H, W] normalised images -> logits [B, num_classes], or a dict of the `out_taps` maps.

        Tap shapes: [B, out_channels[tap], ceil(H / strides[tap]), ceil(W / strides[tap])] (to within the rounding
        of each stride-2 step).
        """
        if not self.out_taps:
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            assert self.classifier is not None
            return self.classifier(x)
        taps: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features):
            name = f"layer_{index + 1}"
            if f"{name}/expansion" in self.out_taps:
                assert isinstance(layer, InvertedResidual)
                x, taps[f"{name}/expansion"] = layer.forward_with_expansion(x)
            else:
                x = layer(x)
            if name in self.out_taps:
                taps[name] = x
        return taps
