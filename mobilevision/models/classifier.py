"""The ImageNet classifiers (paper Table 4): the backbones with their classification layer."""

from __future__ import annotations

import os

from mobilevision.models.backbones.mobilenet_v2 import MobileNetV2
from mobilevision.models.backbones.mobilenet_v3 import MobileNetV3Large
from mobilevision.models.registry import check_arguments


def mobilenet_v2(
    *,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.2,
    tf_exact: bool = False,
) -> MobileNetV2:
    """The ImageNet classifier (paper Table 4); state_dict keys are torchvision's. `tf_exact`: TF's padding and
    BatchNorm epsilon, for weights converted from the TF reference (which takes inputs in [-1, 1])."""
    check_arguments("mobilenet_v2", num_classes=num_classes, width_mult=width_mult)
    return MobileNetV2(
        num_classes=num_classes, width_mult=width_mult, weights=weights, dropout=dropout, tf_exact=tf_exact
    )


def mobilenet_v3_large(
    *,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.2,
) -> MobileNetV3Large:
    """MobileNetV3-Large's ImageNet classifier; state_dict keys are torchvision's `mobilenet_v3_large`'s."""
    check_arguments("mobilenet_v3_large", num_classes=num_classes, width_mult=width_mult)
    return MobileNetV3Large(num_classes=num_classes, width_mult=width_mult, weights=weights, dropout=dropout)
