"""The Backbone contract every feature extractor meets, and the weight loading all backbones share.

A backbone declares its taps (feature maps a head may read, named by layer: `layer_N`, `layer_N/expansion`), the
roles those taps play (`ROLES`: "stride16_expansion", "second_last", "last", ...) and the taps each head reads by
default (`DEFAULT_TAPS`). Heads and tasks name roles, never layers; a layer name is still accepted everywhere a tap
is, because checkpoints written before roles existed store layer names.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from mobilevision.errors import WeightsError

OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)


class Backbone(nn.Module):
    """A feature extractor: `forward(x)` returns the `out_taps` maps as a dict, fine to coarse.

    Class attributes a backbone declares:
        TAP_NAMES: every valid tap, fine to coarse.
        ROLES: role -> tap (at least "stride16_expansion", "second_last" and "last").
        DEFAULT_TAPS: head -> the roles it reads by default ("ssdlite", "deeplabv3", "multitask").
        WEIGHTS_ENUM: the name of the torchvision weights enum in `torchvision.models` ("MobileNet_V2_Weights").

    Instance attributes: `out_taps` (layer names, fine to coarse), `out_channels` and `strides` (per tap).
    Shapes: [B, 3, H, W] -> {tap: [B, out_channels[tap], ~H / strides[tap], ~W / strides[tap]]}.
    """

    TAP_NAMES: ClassVar[tuple[str, ...]] = ()
    ROLES: ClassVar[dict[str, str]] = {}
    DEFAULT_TAPS: ClassVar[dict[str, tuple[str, ...]]] = {}
    WEIGHTS_ENUM: ClassVar[str] = ""

    out_taps: tuple[str, ...]
    out_channels: dict[str, int]
    strides: dict[str, int]
    classifier: nn.Sequential | None

    @classmethod
    def tap_name(cls, tap: str) -> str:
        """The layer name of `tap`, given by role ("last") or by layer name ("layer_19")."""
        name = cls.ROLES.get(tap, tap)
        if name not in cls.TAP_NAMES:
            raise ValueError(
                f"unknown tap {tap!r} for {cls.__name__}; roles: {list(cls.ROLES)}; valid taps: {list(cls.TAP_NAMES)}"
            )
        return name

    @classmethod
    def resolve_taps(cls, taps: Sequence[str]) -> tuple[str, ...]:
        """Layer names of `taps` (roles or layer names), deduplicated and sorted fine to coarse."""
        unknown = [t for t in taps if cls.ROLES.get(t, t) not in cls.TAP_NAMES]
        if unknown:
            valid = f"roles: {list(cls.ROLES)}; valid taps: {list(cls.TAP_NAMES)}"
            raise ValueError(f"unknown taps {unknown} for {cls.__name__}; {valid}")
        return tuple(sorted({cls.tap_name(t) for t in taps}, key=cls.TAP_NAMES.index))

    @classmethod
    def default_taps(cls, head: str) -> tuple[str, ...]:
        """The layer names `head` ("ssdlite", "deeplabv3", "multitask") reads by default, in the head's order."""
        if head not in cls.DEFAULT_TAPS:
            raise ValueError(f"{cls.__name__} declares no default taps for {head!r}; it has {list(cls.DEFAULT_TAPS)}")
        return tuple(cls.tap_name(t) for t in cls.DEFAULT_TAPS[head])

    @staticmethod
    def _layer_index(tap: str) -> int:
        """`features` index of a tap: "layer_N" and "layer_N/expansion" are `features[N - 1]`."""
        return int(tap.split("/")[0].removeprefix("layer_")) - 1

    def set_output_stride(self, output_stride: int) -> None:
        """Change the output stride (8, 16, 32) in place by dilation; the weights do not change."""
        raise NotImplementedError

    def _keeps_classifier(self) -> bool:
        """Whether the ImageNet classifier's weights are ours to load (a 1000-class classification layer)."""
        return self.classifier is not None and getattr(self.classifier[-1], "out_features", None) == 1000

    def load_pretrained(self, weights: str | os.PathLike[str]) -> None:
        """Load ImageNet weights by torchvision name or from a local state_dict file (no code is executed).

        The keys and shapes must match exactly (strict): a partial load would train from silently random layers.

        Raises:
            WeightsError: the name or file is unknown or unreadable, or the weights do not fit this network.
        """
        if _looks_like_path(weights):
            state = load_state_dict_file(weights)
        else:
            state = torchvision_state_dict(self.WEIGHTS_ENUM, str(weights))
        own = self.state_dict()
        if not self._keeps_classifier():
            # A detection/segmentation backbone: ImageNet classifier weights are not ours to load.
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            own = {k: v for k, v in own.items() if not k.startswith("classifier.")}
        check_state_dict(state, own, f"weights {str(weights)!r} do not fit {self._describe()}")
        self.load_state_dict(state, strict=False)

    def _describe(self) -> str:
        return f"{type(self).__name__}(width_mult={getattr(self, 'width_mult', None)})"


def init_weights(module: nn.Module) -> None:
    """torchvision's MobileNet initialisation: Kaiming-normal (fan out) convs, unit BatchNorm, small linear."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def check_output_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")


def check_state_dict(state: dict[str, Tensor], own: dict[str, Tensor], message: str) -> None:
    """Raise `WeightsError(message: ...)` listing missing, unexpected and mis-shaped keys, if there are any."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (first: {missing[:5]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[:3]})")
    if parts:
        raise WeightsError(f"{message}: " + "; ".join(parts))


def _looks_like_path(weights: str | os.PathLike[str]) -> bool:
    text = str(weights)
    return isinstance(weights, os.PathLike) or os.sep in text or "." in text or Path(text).exists()


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state_dict from a `.pt/.pth` (torch, `weights_only=True`) or `.safetensors` file.

    A Lightning checkpoint or `{"state_dict": ...}` / `{"model": ...}` wrapper is unwrapped.

    Raises:
        WeightsError: the file is missing, not a weights file, or holds objects other than tensors (pickled code).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:  # pragma: no cover - depends on the user's environment
            raise WeightsError("reading .safetensors needs the `safetensors` package") from error
        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for unsafe or corrupt files
        raise WeightsError(
            f"cannot load {path} as weights: {str(error).splitlines()[0]} "
            "(only tensors and plain containers are accepted; pickled code is refused)"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} is not a state_dict (a mapping from names to tensors)")
    return obj


def torchvision_state_dict(enum_name: str, name: str) -> dict[str, Tensor]:
    """torchvision's weights `enum_name[name]` ("MobileNet_V2_Weights", "IMAGENET1K_V1"), downloaded once.

    Raises:
        WeightsError: the name is unknown, or the download failed (the message says how to load them offline).
    """
    import torchvision.models

    enum = getattr(torchvision.models, enum_name)
    try:
        weights = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = [w.name for w in enum] + ["DEFAULT"]
        raise WeightsError(f"unknown weights {name!r}: give a file path or one of {valid}") from None
    file_name = weights.url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not cached.is_file():
        print(f"downloading torchvision's {name} weights ({weights.url}) to {cached}", file=sys.stderr)
    try:
        # torch.hub writes its own "Downloading: ..." line and progress bar; on failure they would only bury ours.
        with contextlib.redirect_stderr(io.StringIO()):
            return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # noqa: BLE001 - network errors come in many types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"could not download torchvision's {name} weights ({reason}). Offline: fetch {weights.url} on a "
            f"machine with internet and pass the file, e.g. backbone_weights: /path/to/{file_name} "
            f"(--model.init_args.backbone_weights=/path/to/{file_name}), or put it at {cached}"
        ) from None
