"""The paper's segmentation inference strategies (Table 7): evaluation output stride and MF.

MF is multi-scale inputs (0.5 to 1.75 in steps of 0.25 by default) with left-right flips; the class probabilities
(softmax of each pass's logits, upsampled to the input resolution) are averaged, as in the TF DeepLab reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

MF_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def multi_scale_flip_probs(
    model: Callable[[Tensor], Tensor], images: Tensor, *, scales: Sequence[float] = MF_SCALES, flip: bool = True
) -> Tensor:
    """Class probabilities averaged over input scales (and their left-right flips), at the input size.

    Args:
        model: images [B, 3, h, w] -> logits [B, C, h', w'] (a `Segmenter`, or an onnxruntime session wrapped in a
            function: any input size must be accepted).
        images: [B, 3, H, W] RGB, uint8 or float 0..255.
    Returns:
        probabilities [B, C, H, W] (float32; each pixel's sum over C is 1).
    """
    if not scales:
        raise ValueError("scales must not be empty")
    height, width = images.shape[-2:]
    images = images.float()
    total: Tensor | None = None
    count = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images if size == (height, width) else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False
        )
        variants = [scaled, scaled.flip(-1)] if flip else [scaled]
        for index, variant in enumerate(variants):
            logits = model(variant).float()
            if index == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
            count += 1
    assert total is not None
    return total / count
