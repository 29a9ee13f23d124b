"""`build_model(name, **kwargs)`: the short names of the paper's configurations, one plain table.

The import path of each builder is the real registry (LightningCLI configs name the builders directly); this table
only gives them short names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from mobilevision.backbones.mobilenet_v2 import MobileNetV2
from mobilevision.errors import InvalidValueError
from mobilevision.heads.deeplabv3 import DeepLabV3Head
from mobilevision.heads.ssd import EXTRA_DEPTHS, SSDHead
from mobilevision.tasks.detection.anchors import DefaultBoxes
from mobilevision.tasks.detection.model import Detector
from mobilevision.tasks.segmentation.model import Segmenter

# SSDLite's two backbone maps (paper section 6.2): layer-15 expansion (stride 16) and layer 19 (stride 32).
SSD_TAPS: tuple[str, str] = ("layer_15/expansion", "layer_19")
# Mobile DeepLabv3's map: the second-last, 320-channel layer (the paper's MNet V2*).
DEEPLAB_TAP: str = "layer_18"


# The paper's range of width multipliers (Section 6.1, Figure 5: 0.35 to 1.4), the one the README promises. The
# backbone class itself builds any width in 0.1..2.0 for experiments; the named builders keep to the paper's.
WIDTH_RANGE: tuple[float, float] = (0.35, 1.4)
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)


def check_arguments(builder: str, *, num_classes: int, width_mult: float, output_stride: int | None = None) -> None:
    """Raise `InvalidValueError` quoting the value when an argument is outside what the builder supports."""
    low, high = WIDTH_RANGE
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not low <= width_mult <= high:
        raise InvalidValueError(
            f"{builder}: width_mult must be between {low} and {high} (the paper's range), got {width_mult!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidValueError(
            f"{builder}: num_classes must be an integer >= 2 (background included), got {num_classes!r}"
        )
    if output_stride is not None and output_stride not in OUTPUT_STRIDES:
        raise InvalidValueError(f"{builder}: output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def mobilenet_v2(
    *,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.2,
) -> MobileNetV2:
    """The ImageNet classifier (paper Table 4); state_dict keys are torchvision's."""
    check_arguments("mobilenet_v2", num_classes=num_classes, width_mult=width_mult)
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, weights=weights, dropout=dropout)


def _detector(
    *,
    separable: bool,
    num_classes: int,
    width_mult: float,
    weights: str | os.PathLike[str] | None,
    default_boxes: DefaultBoxes | dict[str, Any] | None,
    extra_depths: Sequence[int],
    taps: Sequence[str],
    zero_init_residual: bool,
    **detector_kwargs: Any,
) -> Detector:
    check_arguments("detector", num_classes=num_classes, width_mult=width_mult)
    if isinstance(default_boxes, dict):  # as stored in checkpoints: plain values
        default_boxes = DefaultBoxes(**{k: tuple(v) if isinstance(v, list) else v for k, v in default_boxes.items()})
    backbone = MobileNetV2(
        num_classes=None,
        width_mult=width_mult,
        out_taps=tuple(taps),
        weights=weights,
        zero_init_residual=zero_init_residual,
    )
    default_boxes = default_boxes or DefaultBoxes(num_maps=len(backbone.out_taps) + len(extra_depths))
    if default_boxes.num_maps != len(backbone.out_taps) + len(extra_depths):
        raise ValueError(
            f"default_boxes.num_maps is {default_boxes.num_maps} but there are {len(backbone.out_taps)} taps and "
            f"{len(extra_depths)} extra layers"
        )
    head = SSDHead(
        in_channels=[backbone.out_channels[t] for t in backbone.out_taps],
        num_anchors=default_boxes.num_anchors,
        num_classes=num_classes,
        extra_depths=extra_depths,
        separable=separable,
    )
    return Detector(backbone=backbone, head=head, default_boxes=default_boxes, **detector_kwargs)


def ssdlite_mobilenet_v2(
    *,
    num_classes: int = 91,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    default_boxes: DefaultBoxes | dict[str, Any] | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    taps: Sequence[str] = SSD_TAPS,
    zero_init_residual: bool = False,
    **detector_kwargs: Any,
) -> Detector:
    """MobileNetV2 + SSDLite (paper Table 6). `num_classes` counts the background (COCO: 81, or 91 with id gaps).

    `taps` are the backbone maps the head reads, fine to coarse (the paper's: layer-15 expansion and layer 19); the
    extra layers grow from the last one. Adding a stride-8 map (e.g. "layer_8/expansion") helps small objects.
    `zero_init_residual` starts residual blocks as identities (see `MobileNetV2`), for training from random weights.
    """
    return _detector(
        separable=True,
        num_classes=num_classes,
        width_mult=width_mult,
        weights=weights,
        default_boxes=default_boxes,
        extra_depths=extra_depths,
        taps=taps,
        zero_init_residual=zero_init_residual,
        **detector_kwargs,
    )


def ssd_mobilenet_v2(
    *,
    num_classes: int = 91,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    default_boxes: DefaultBoxes | dict[str, Any] | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    taps: Sequence[str] = SSD_TAPS,
    zero_init_residual: bool = False,
    **detector_kwargs: Any,
) -> Detector:
    """MobileNetV2 + classic SSD head with regular 3x3 convolutions (the paper's Table 5 comparison)."""
    return _detector(
        separable=False,
        num_classes=num_classes,
        width_mult=width_mult,
        weights=weights,
        default_boxes=default_boxes,
        extra_depths=extra_depths,
        taps=taps,
        zero_init_residual=zero_init_residual,
        **detector_kwargs,
    )


def deeplabv3_mobilenet_v2(
    *,
    num_classes: int = 21,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    output_stride: int = 16,
    atrous_rates: Sequence[int] = (),
    head_channels: int = 256,
    dropout: float = 0.1,
    zero_init_residual: bool = False,
) -> Segmenter:
    """Mobile DeepLabv3 on the second-last map (paper Table 7). `atrous_rates=()` is the reduced, on-device head."""
    check_arguments(
        "deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=width_mult, output_stride=output_stride
    )
    backbone = MobileNetV2(
        num_classes=None,
        width_mult=width_mult,
        output_stride=output_stride,
        out_taps=(DEEPLAB_TAP,),
        weights=weights,
        zero_init_residual=zero_init_residual,
    )
    head = DeepLabV3Head(
        in_channels=backbone.out_channels[DEEPLAB_TAP],
        num_classes=num_classes,
        atrous_rates=atrous_rates,
        channels=head_channels,
        dropout=dropout,
    )
    return Segmenter(backbone=backbone, head=head)


def ssdlite_deeplabv3_mobilenet_v2(**kwargs: Any) -> nn.Module:
    """SSDLite + Mobile DeepLabv3 on one MobileNetV2 pass (`mobilevision.tasks.multitask.model`)."""
    from mobilevision.tasks.multitask.model import ssdlite_deeplabv3_mobilenet_v2 as build

    return build(**kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": mobilenet_v2,
    "ssdlite_mobilenet_v2": ssdlite_mobilenet_v2,
    "ssd_mobilenet_v2": ssd_mobilenet_v2,
    "deeplabv3_mobilenet_v2": deeplabv3_mobilenet_v2,
    "ssdlite_deeplabv3_mobilenet_v2": ssdlite_deeplabv3_mobilenet_v2,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by short name; keyword arguments go to its builder (see the builders' docstrings)."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}") from None
    return builder(**kwargs)
