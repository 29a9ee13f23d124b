"""Inference-time rewrites of a trained network for the torch CPU path: BatchNorm folded into the convolutions and
channels-last weights. The Predictor's input is a permuted HWC image, which already is a channels-last tensor, so the
convolutions run channels-last whatever the weights' layout; converting the weights costs nothing and is kept for
inputs built otherwise. How much each pays, beside onnxruntime (the fastest backend here): `mobilevision benchmark
predictor` (docs/benchmarks.md).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d in a Sequential into the convolution, in place.

    The BatchNorm is replaced by an Identity so the Sequential keeps its indices (InvertedResidual indexes
    `conv[3]`). The model must be in eval mode: the running statistics are what gets folded.

    Returns:
        The number of folded pairs.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (running statistics are folded)")
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


def optimize_for_cpu(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy with BatchNorm folded and (optionally) channels-last weights; `model` is left untouched.

    Channels-last pays on CPU for the 1x1 and depthwise convolutions of MobileNetV2 (oneDNN's NHWC kernels); inputs
    built from HWC uint8 images by `permute(2, 0, 1)` are already channels-last, so it costs no copy.
    """
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return fast
