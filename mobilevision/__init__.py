"""mobilevision: MobileNetV2 with SSDLite detection and Mobile DeepLabv3 segmentation heads.

Public API: `build_model(name, **kwargs)` and `Predictor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["build_model", "Predictor", "MODELS", "__version__"]

if TYPE_CHECKING:
    from mobilevision.inference.predictor import Predictor


def __getattr__(name: str) -> Any:
    # Lazy so `import mobilevision` stays cheap (the CLI imports it for every command).
    if name in ("build_model", "MODELS"):
        from mobilevision import models

        return getattr(models, name)
    if name == "Predictor":
        from mobilevision.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'mobilevision' has no attribute {name!r}")
