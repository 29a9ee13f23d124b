"""MobileNetV3-Large and -Small (Howard et al., 2019, arXiv 1905.02244) as `Backbone`s.

Built from torchvision's own blocks and block table (`InvertedResidual`, `_mobilenet_v3_conf`), so the module names
and parameter shapes are `torchvision.models.mobilenet_v3_large` / `_small`'s (`features.N.block.M`,
`classifier.0`, `classifier.3`) and torchvision's ImageNet weights load with `strict=True`.

Taps follow MobileNetV2's numbering: `features[i]` is `layer_{i+1}` (`layer_1` the stem conv, then the inverted
residuals, the last layer the final 1x1 conv); `layer_N/expansion` is the 1x1 expansion inside a block that has one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import ClassVar

from torch import Tensor, nn

# torchvision's own block table (private): the same layer list is what makes its state_dict keys load strict.
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig, _mobilenet_v3_conf
from torchvision.ops.misc import Conv2dNormActivation

from mobilevision.models.backbones.base import Backbone, check_output_stride, init_weights


def _taps(num_blocks: int, expanded: Sequence[int]) -> tuple[str, ...]:
    """Every tap fine to coarse: each layer, preceded by its expansion for the blocks (1-based layers) that have one."""
    names: list[str] = []
    for n in range(1, num_blocks + 3):
        if n in expanded:
            names.append(f"layer_{n}/expansion")
        names.append(f"layer_{n}")
    return tuple(names)


def _dilations(settings: Sequence[InvertedResidualConfig], output_stride: int) -> list[int]:
    """Depthwise dilation of each block for an output stride, as torchvision's `dilated=True` (which is OS16).

    A stride-2 block past the output stride keeps the resolution (torchvision's block strides 1 when dilated) and
    its own depthwise conv already dilates, so blocks from it on see the receptive field they were trained with.
    """
    dilations, current, dilation = [], 2, 1
    for cnf in settings:
        if cnf.stride == 2:
            if current >= output_stride:
                dilation *= 2
            else:
                current *= 2
        dilations.append(dilation)
    return dilations


class MobileNetV3(Backbone):
    """MobileNetV3 (the `ARCH` of the subclass) as a classifier (`num_classes`) or feature extractor (`out_taps`).

    Args:
        num_classes: classifier outputs; None builds no classifier (feature extractor).
        width_mult: channel multiplier (torchvision's rounding to multiples of 8).
        output_stride: 32, 16 or 8, by dilation of the later blocks (16 is torchvision's `dilated=True`).
        reduced_tail: halve the channels of the last stage (the paper's Table 6 option for detection and
            segmentation; torchvision's SSDLite uses it when no ImageNet backbone is loaded). ImageNet weights are
            for the full tail.
        out_taps: taps returned by `forward`, roles of `ROLES` or names of `TAP_NAMES` (stored as names); the network
            is truncated after the deepest. None returns classifier logits.
        weights: None, a torchvision weight name ("IMAGENET1K_V1", "DEFAULT") or a local state_dict file.
        dropout: classifier dropout.
        zero_init_residual: start the last BatchNorm of every residual block at gamma 0 (see `MobileNetV2`).
    """

    ARCH: ClassVar[str] = ""

    def __init__(
        self,
        *,
        num_classes: int | None = 1000,
        width_mult: float = 1.0,
        output_stride: int = 32,
        reduced_tail: bool = False,
        out_taps: Sequence[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        dropout: float = 0.2,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        if not 0.1 <= width_mult <= 2.0:
            raise ValueError(f"width_mult must be between 0.1 and 2.0, got {width_mult}")
        if num_classes is None and not out_taps:
            raise ValueError("give num_classes (classifier) or out_taps (feature extractor)")
        self.width_mult = width_mult
        self.reduced_tail = reduced_tail
        self.out_taps: tuple[str, ...] = self.resolve_taps(out_taps) if out_taps is not None else ()

        settings, last_channel = _mobilenet_v3_conf(self.ARCH, width_mult=width_mult, reduced_tail=reduced_tail)
        self._settings = settings
        # torchvision's BatchNorm settings for MobileNetV3 (the ones its ImageNet weights were trained with).
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        for cnf, dilation in zip(settings, _dilations(settings, output_stride)):
            cnf.dilation = dilation
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                settings[0].input_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        ]
        layers += [InvertedResidual(cnf, norm_layer) for cnf in settings]
        self.last_channels = 6 * settings[-1].out_channels
        layers.append(
            Conv2dNormActivation(
                settings[-1].out_channels,
                self.last_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.classifier: nn.Sequential | None = None
        if num_classes is not None:
            self.classifier = nn.Sequential(
                nn.Linear(self.last_channels, last_channel),
                nn.Hardswish(inplace=True),
                nn.Dropout(p=dropout, inplace=True),
                nn.Linear(last_channel, num_classes),
            )
        init_weights(self)
        if zero_init_residual:
            for block in self.features:
                if isinstance(block, InvertedResidual) and block.use_res_connect:
                    nn.init.zeros_(block.block[-1][1].weight)
        if weights is not None:
            self.load_pretrained(weights)

        self.output_stride = output_stride
        self.out_channels: dict[str, int] = {t: self._all_channels()[t] for t in self.out_taps}
        self.strides: dict[str, int] = {t: self._all_strides()[t] for t in self.out_taps}
        if self.out_taps:
            # Drop what no tap needs (the layers past the deepest tap) and, as a feature extractor, the classifier.
            self.features = self.features[: max(self._layer_index(t) for t in self.out_taps) + 1]
            if num_classes is None:
                self.classifier = None

    def _all_channels(self) -> dict[str, int]:
        channels = {"layer_1": self._settings[0].input_channels}
        for n, cnf in enumerate(self._settings, start=2):
            if cnf.expanded_channels != cnf.input_channels:
                channels[f"layer_{n}/expansion"] = cnf.expanded_channels
            channels[f"layer_{n}"] = cnf.out_channels
        channels[f"layer_{len(self._settings) + 2}"] = self.last_channels
        return channels

    def _all_strides(self) -> dict[str, int]:
        current, strides = 2, {"layer_1": 2}
        for n, (cnf, dilation) in enumerate(zip(self._settings, _dilations(self._settings, self.output_stride)), 2):
            strides[f"layer_{n}/expansion"] = current
            current *= 1 if dilation > 1 else cnf.stride
            strides[f"layer_{n}"] = current
        strides[f"layer_{len(self._settings) + 2}"] = current
        return strides

    def set_output_stride(self, output_stride: int) -> None:
        """Change the output stride in place: only the depthwise convs' strides, dilations and paddings change."""
        check_output_stride(output_stride)
        for index, (cnf, dilation) in enumerate(zip(self._settings, _dilations(self._settings, output_stride))):
            if index + 1 >= len(self.features):
                break
            block = self.features[index + 1]
            depthwise = block.block[1 if cnf.expanded_channels != cnf.input_channels else 0][0]
            stride = 1 if dilation > 1 else cnf.stride
            pad = (cnf.kernel - 1) // 2 * dilation
            depthwise.stride, depthwise.dilation, depthwise.padding = (stride, stride), (dilation, dilation), (pad, pad)
        self.output_stride = output_stride
        strides = self._all_strides()
        self.strides = {t: strides[t] for t in self.out_taps}

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """[B, 3, H, W] normalised images -> logits [B, num_classes], or a dict of the `out_taps` maps
        [B, out_channels[tap], ~H / strides[tap], ~W / strides[tap]]."""
        if not self.out_taps:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
            assert self.classifier is not None
            return self.classifier(x)
        taps: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features):
            name = f"layer_{index + 1}"
            if f"{name}/expansion" in self.out_taps:
                # torchvision's block, split after its expansion conv (block[0]) to hand that map out too.
                taps[f"{name}/expansion"] = expanded = layer.block[0](x)
                out = layer.block[1:](expanded)
                x = x + out if layer.use_res_connect else out
            else:
                x = layer(x)
            if name in self.out_taps:
                taps[name] = x
        return taps


class MobileNetV3Large(MobileNetV3):
    """MobileNetV3-Large: 15 inverted residuals (`layer_2` .. `layer_16`), the 960-channel 1x1 conv `layer_17`."""

    ARCH = "mobilenet_v3_large"
    TAP_NAMES = _taps(15, expanded=range(3, 17))
    # torchvision's SSDLite reads the expansion of the first stride-32 block (672 ch at stride 16) and the last map;
    # its DeepLabv3 and LR-ASPP read the last map at output stride 16.
    ROLES = {
        "stride8_expansion": "layer_8/expansion",
        "stride16_expansion": "layer_14/expansion",
        "second_last": "layer_16",
        "last": "layer_17",
    }
    DEFAULT_TAPS = {"ssdlite": ("stride16_expansion", "last"), "deeplabv3": ("last",), "multitask": ("last",)}
    WEIGHTS_ENUM = "MobileNet_V3_Large_Weights"


class MobileNetV3Small(MobileNetV3):
    """MobileNetV3-Small: 11 inverted residuals (`layer_2` .. `layer_12`), the 576-channel 1x1 conv `layer_13`."""

    ARCH = "mobilenet_v3_small"
    TAP_NAMES = _taps(11, expanded=range(3, 13))
    ROLES = {
        "stride8_expansion": "layer_5/expansion",
        "stride16_expansion": "layer_10/expansion",
        "second_last": "layer_12",
        "last": "layer_13",
    }
    DEFAULT_TAPS = {"ssdlite": ("stride16_expansion", "last"), "deeplabv3": ("last",), "multitask": ("last",)}
    WEIGHTS_ENUM = "MobileNet_V3_Small_Weights"
