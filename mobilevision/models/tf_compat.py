"""TF-exact building blocks, for networks converted from the TensorFlow reference (`mobilevision convert tf`).

`make_tf_exact(module)` switches a network's convolutions to TF's `SAME` padding and its BatchNorms to TF's epsilon,
in place; the state_dict keys and shapes do not change. TF's `SAME` pads `total = max((ceil(n / s) - 1) * s + k_eff
- n, 0)` with `total // 2` before and the rest after: at stride 2 on an even size that is 0 top/left and 1
bottom/right, where PyTorch's fixed padding is symmetric (measured on the reference: tests/convert/).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

# slim's MobileNetV2 `training_scope` BatchNorm epsilon (DeepLab's head keeps 1e-5, PyTorch's default).
TF_BN_EPS: float = 1e-3
# `tf.keras.applications.mobilenet_v2.preprocess_input` / slim's `inception_preprocessing`: x / 127.5 - 1.
TF_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
TF_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class TFSameConv2d(nn.Conv2d):
    """An `nn.Conv2d` padded as TF's `SAME` for the input it gets (its own `padding` is ignored)."""

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = _same_pad(int(x.shape[-2]), self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = _same_pad(int(x.shape[-1]), self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def make_tf_exact(module: nn.Module, *, bn_eps: float = TF_BN_EPS) -> nn.Module:
    """TF `SAME` padding on every convolution with a kernel > 1, BatchNorm epsilon `bn_eps`; in place, returned."""
    for m in module.modules():
        if type(m) is nn.Conv2d and max(m.kernel_size) > 1:
            m.__class__ = TFSameConv2d
        elif isinstance(m, nn.BatchNorm2d):
            m.eps = bn_eps
    return module
