"""`build_model(name, **kwargs)`: the short names of the paper's configurations, in one lazy table.

The table maps each name to the import path of its builder ("module:function"), imported only when the name is
built, so reading the table (the CLI's help, `mobilevision profile --help`) imports no model code. LightningCLI
configs may also name builders by import path directly; this table only gives them short names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mobilevision.errors import InvalidValueError

# The paper's range of width multipliers (Section 6.1, Figure 5: 0.35 to 1.4), the one the README promises. The
# backbone classes build any width in 0.1..2.0 for experiments; the named builders keep to the paper's.
WIDTH_RANGE: tuple[float, float] = (0.35, 1.4)
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)


def check_arguments(builder: str, *, num_classes: int, width_mult: float, output_stride: int | None = None) -> None:
    """Raise `InvalidValueError` quoting the value when an argument is outside what the builder supports."""
    low, high = WIDTH_RANGE
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not low <= width_mult <= high:
        raise InvalidValueError(
            f"{builder}: width_mult must be between {low} and {high} (the paper's range), got {width_mult!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidValueError(
            f"{builder}: num_classes must be an integer >= 2 (background included), got {num_classes!r}"
        )
    if output_stride is not None and output_stride not in OUTPUT_STRIDES:
        raise InvalidValueError(f"{builder}: output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


class LazyTable(Mapping[str, Callable[..., Any]]):
    """A read-only name -> callable mapping whose values are import paths, imported on first lookup."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = dict(paths)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        module, _, attribute = self._paths[name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, name: str) -> str:
        """The import path of `name`'s builder, without importing it."""
        return self._paths[name]


MODELS: LazyTable = LazyTable(
    {
        "mobilenet_v2": "mobilevision.models.classifier:mobilenet_v2",
        "image_classifier_mobilenet_v2": "mobilevision.models.classifier:image_classifier_mobilenet_v2",
        "ssdlite_mobilenet_v2": "mobilevision.models.detector:ssdlite_mobilenet_v2",
        "ssd_mobilenet_v2": "mobilevision.models.detector:ssd_mobilenet_v2",
        "deeplabv3_mobilenet_v2": "mobilevision.models.segmenter:deeplabv3_mobilenet_v2",
        "ssdlite_deeplabv3_mobilenet_v2": "mobilevision.models.multitask:ssdlite_deeplabv3_mobilenet_v2",
        "mobilenet_v3_large": "mobilevision.models.classifier:mobilenet_v3_large",
        "ssdlite_mobilenet_v3_large": "mobilevision.models.detector:ssdlite_mobilenet_v3_large",
        "deeplabv3_mobilenet_v3_large": "mobilevision.models.segmenter:deeplabv3_mobilenet_v3_large",
        "ssdlite_deeplabv3_mobilenet_v3_large": "mobilevision.models.multitask:ssdlite_deeplabv3_mobilenet_v3_large",
    }
)


def build_model(name: str, **kwargs: Any) -> Any:
    """Build a model by short name; keyword arguments go to its builder (see the builders' docstrings)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
