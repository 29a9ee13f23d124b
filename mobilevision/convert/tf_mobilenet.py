"""Map the TF reference's MobileNetV2 checkpoints (slim classifier, DeepLab) onto mobilevision's networks.

Every variable of the checkpoint is accounted for: mapped onto exactly one parameter or buffer, or skipped as
training state (`global_step`, optimizer slots), the `ExponentialMovingAverage` copy taking the place of the raw
variable when present (the reference evaluates with it). What is left unmapped, or a parameter no variable fills,
raises one `WeightsError` listing them; nothing is loaded silently.

Layouts: conv kernels HWIO -> OIHW, depthwise kernels HW,C,1 -> C,1,H,W, slim BatchNorm gamma/beta/moving_mean/
moving_variance -> weight/bias/running_mean/running_var. The classifier's 1001 outputs (0 = background) become
torchvision's 1000; DeepLab's `concat_projection` reads [image_pooling, aspp0] where mobilevision concatenates
[aspp0, image_pooling], so its input channels are swapped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilevision.errors import WeightsError

# The widths of the TF model zoos' MobileNetV2 checkpoints.
ZOO_WIDTHS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
_SLOTS = ("/Momentum", "/RMSProp", "/RMSProp_1", "/Adam", "/Adam_1")
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _conv(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)


def _depthwise(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 3, 0, 1)


Source = tuple[str, Callable[[np.ndarray], np.ndarray]]


def _bn(target: dict[str, Source], key: str, scope: str) -> None:
    for ours, theirs in _BN.items():
        target[f"{key}.{ours}"] = (f"{scope}/BatchNorm/{theirs}", lambda a: a)


def backbone_sources(num_layers: int, *, prefix: str = "backbone.features", scope: str = "MobilenetV2") -> dict:
    """{mobilevision key: (TF name, layout)} of the first `num_layers` `features` entries (19: the whole net)."""
    out: dict[str, Source] = {}
    out[f"{prefix}.0.0.weight"] = (f"{scope}/Conv/weights", _conv)
    _bn(out, f"{prefix}.0.1", f"{scope}/Conv")
    for index in range(1, min(num_layers, 18)):
        block = f"{scope}/expanded_conv" + ("" if index == 1 else f"_{index - 1}")
        key = f"{prefix}.{index}.conv"
        first = 0
        if index > 1:  # layer_2 (t = 1) has no expansion
            out[f"{key}.0.0.weight"] = (f"{block}/expand/weights", _conv)
            _bn(out, f"{key}.0.1", f"{block}/expand")
            first = 1
        out[f"{key}.{first}.0.weight"] = (f"{block}/depthwise/depthwise_weights", _depthwise)
        _bn(out, f"{key}.{first}.1", f"{block}/depthwise")
        out[f"{key}.{first + 1}.weight"] = (f"{block}/project/weights", _conv)
        _bn(out, f"{key}.{first + 2}", f"{block}/project")
    if num_layers >= 19:
        out[f"{prefix}.18.0.weight"] = (f"{scope}/Conv_1/weights", _conv)
        _bn(out, f"{prefix}.18.1", f"{scope}/Conv_1")
    return out


def classifier_sources() -> dict[str, Source]:
    out = backbone_sources(19, prefix="features")
    logits = "MobilenetV2/Logits/Conv2d_1c_1x1"
    out["classifier.1.weight"] = (f"{logits}/weights", lambda a: a[0, 0, :, 1:].T)
    out["classifier.1.bias"] = (f"{logits}/biases", lambda a: a[1:])
    return out


def deeplab_sources(num_layers: int, channels: int) -> dict[str, Source]:
    out = backbone_sources(num_layers)
    out["head.branches.0.0.weight"] = ("aspp0/weights", _conv)
    _bn(out, "head.branches.0.1", "aspp0")
    out["head.branches.1.conv.0.weight"] = ("image_pooling/weights", _conv)
    _bn(out, "head.branches.1.conv.1", "image_pooling")

    def swap(a: np.ndarray) -> np.ndarray:  # [image_pooling, aspp0] -> [aspp0, image_pooling]
        w = _conv(a)
        return np.concatenate([w[:, channels:], w[:, :channels]], axis=1)

    out["head.project.0.weight"] = ("concat_projection/weights", swap)
    _bn(out, "head.project.1", "concat_projection")
    out["head.classifier.weight"] = ("logits/semantic/weights", _conv)
    out["head.classifier.bias"] = ("logits/semantic/biases", lambda a: a)
    return out


def is_training_state(name: str) -> bool:
    return name == "global_step" or name.endswith(_SLOTS) or name.endswith("/ExponentialMovingAverage")


def load_sources(model: nn.Module, variables: dict[str, np.ndarray], sources: dict[str, Source], path: Path) -> None:
    """Fill `model`'s state from `variables` through `sources`, strictly (see the module docstring)."""
    state = model.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    missing_keys = sorted(wanted - set(sources))
    if missing_keys:  # a mapping bug, not the user's file
        raise WeightsError(f"{path}: no TF variable is known for {len(missing_keys)} parameters: {missing_keys[:5]}")
    used = {sources[k][0] for k in wanted}
    absent = sorted(n for n in used if n not in variables)
    unmapped = sorted(n for n in variables if n not in used and not is_training_state(n))
    if absent or unmapped:
        parts = []
        if absent:
            parts.append(f"{len(absent)} expected variables missing (first: {absent[:4]})")
        if unmapped:
            parts.append(f"{len(unmapped)} unmapped variables (first: {unmapped[:4]})")
        raise WeightsError(f"{path}: does not match the model: " + "; ".join(parts))
    new = {}
    for key in wanted:
        name, layout = sources[key]
        array = variables.get(f"{name}/ExponentialMovingAverage", variables[name])
        value = torch.from_numpy(np.ascontiguousarray(layout(array))).to(state[key].dtype)
        if tuple(value.shape) != tuple(state[key].shape):
            raise WeightsError(
                f"{path}: {name} has shape {tuple(array.shape)}, the model wants {tuple(state[key].shape)} for {key}"
            )
        new[key] = value
    model.load_state_dict(new, strict=False)


def infer_width(variables: dict[str, np.ndarray], path: Path, *, scope: str = "MobilenetV2") -> float:
    """The zoo width whose channel counts the checkpoint has (first conv and layer 18's projection)."""
    from mobilevision.models.backbones.mobilenet_v2 import make_divisible

    first = variables.get(f"{scope}/Conv/weights")
    last = variables.get(f"{scope}/expanded_conv_16/project/weights")
    if first is None or last is None:
        raise WeightsError(f"{path}: not a MobileNetV2 checkpoint (no {scope}/Conv or {scope}/expanded_conv_16)")
    got = (int(first.shape[-1]), int(last.shape[-1]))
    for width in ZOO_WIDTHS:
        if (make_divisible(32 * width), make_divisible(320 * width)) == got:
            return width
    raise WeightsError(f"{path}: channels {got} (first conv, layer 18) match no MobileNetV2 width of {ZOO_WIDTHS}")
