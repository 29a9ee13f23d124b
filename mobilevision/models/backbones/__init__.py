"""The backbone table: name -> "module:Class", imported only when a backbone of that name is built.

A new backbone is one file meeting `base.Backbone` plus one line here; the builders (`backbone=` of
`ssdlite_mobilenet_v2`, `deeplabv3_mobilenet_v2`, ...) and the contract test read this table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilevision.models.registry import LazyTable

if TYPE_CHECKING:
    from mobilevision.models.backbones.base import Backbone

BACKBONES: LazyTable = LazyTable(
    {
        "mobilenet_v2": "mobilevision.models.backbones.mobilenet_v2:MobileNetV2",
        "mobilenet_v3_large": "mobilevision.models.backbones.mobilenet_v3:MobileNetV3Large",
        "mobilenet_v3_small": "mobilevision.models.backbones.mobilenet_v3:MobileNetV3Small",
    }
)


def backbone_class(name: str) -> type[Backbone]:
    """The `Backbone` subclass registered as `name`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]
