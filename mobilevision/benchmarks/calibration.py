"""BatchNorm calibration: running statistics of an untrained network set from generated images, so its outputs vary
across the image as a trained one's do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def calibrate_batchnorm(
    model: nn.Module,
    images: Sequence[np.ndarray],
    *,
    batch_size: int = 8,
    forward: Callable[[Tensor], Any] | None = None,
) -> nn.Module:
    """Set every BatchNorm's running statistics to the plain average over `images` (RGB uint8 (H, W, 3) at the
    network's input size): train mode with `momentum=None` (cumulative average), no gradient, then eval mode.

    Fresh statistics (mean 0, variance 1) leave an untrained network's activations vanishing with depth, so every
    box scores about 1/num_classes; calibrated, the network's outputs vary across the image as a trained one's do.
    `forward` (default: the model's own, all branches) takes the float batch (B, 3, H, W) in 0..255, for a reference
    pipeline that wants its own normalization first.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    # Every branch's BatchNorms see the images: the joint model's segmentation head too (`forward_all`).
    forward = forward or getattr(model, "forward_all", None) or getattr(model, "forward_raw", model)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            forward(torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2).float())
    for m in norms:
        m.momentum = 0.1
    return model.eval()
