"""Input normalisation, shared by every model so datasets and the predictor hand over plain 0..255 pixels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# ImageNet statistics of torchvision's MobileNetV2 weights, in 0..1 RGB.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """[B, 3, H, W] uint8 or float RGB in 0..255 -> float (x / 255 - mean) / std, in one fused multiply-add."""

    def __init__(
        self, mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
        # Not persistent: constants, not weights, so state_dicts stay those of the networks.
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        self.mean, self.std = mean, std

    def forward(self, images: Tensor) -> Tensor:
        if not images.is_floating_point():
            images = images.float()
        return torch.addcmul(self.shift, images, self.scale)
