"""The ImageNet classifiers (paper Table 4): the backbones with their classification layer."""

from __future__ import annotations

import os

from torch import Tensor, nn

from mobilevision.models.backbones.mobilenet_v2 import MobileNetV2
from mobilevision.models.backbones.mobilenet_v3 import MobileNetV3Large
from mobilevision.models.normalize import Normalize
from mobilevision.models.registry import check_arguments
from mobilevision.models.tf_compat import TF_MEAN, TF_STD


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


class ImageClassifier(nn.Module):
    """A classifier on 0..255 RGB images (the classification task's model): input scaling, then the network.

    `tf_exact` scales to [-1, 1] (the TF reference's convention) instead of ImageNet's mean/std, and builds the
    network with TF's padding and epsilon. Input [B, 3, H, W] uint8 or float in 0..255 -> logits [B, num_classes].
    """

    def __init__(self, network: MobileNetV2, *, tf_exact: bool = False) -> None:
        super().__init__()
        self.normalize = Normalize(TF_MEAN, TF_STD) if tf_exact else Normalize()
        self.network = network

    @property
    def num_classes(self) -> int:
        assert self.network.classifier is not None
        return int(self.network.classifier[-1].out_features)

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.normalize(images))


def image_classifier_mobilenet_v2(
    *,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.2,
    tf_exact: bool = False,
) -> ImageClassifier:
    """`mobilenet_v2` on 0..255 images (the classification task's model; `mobilevision convert tf` writes it)."""
    network = mobilenet_v2(
        num_classes=num_classes, width_mult=width_mult, weights=weights, dropout=dropout, tf_exact=tf_exact
    )
    return ImageClassifier(network, tf_exact=tf_exact)
