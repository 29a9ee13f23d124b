"""mobilevision: MobileNetV2 with SSDLite detection and Mobile DeepLabv3 segmentation heads.

Public API: `build_model(name, **kwargs)`, `Predictor`, `train(config, ...)` (training from Python,
`mobilevision.api`), and `config_paths()` / `resolve_config(name_or_path)` (the shipped configs).

Contracts that hold across the package:
- `num_classes` is what a model predicts, background included: 81 for COCO detection, 21 for VOC (builders,
  `Detector`, `Segmenter`, heads, DataModules, `DetectionMeta.num_classes`, checkpoints). A dataset's own count
  without background is `num_object_classes` (`DetectionMeta`) and `object_classes` in `data check` reports.
- Class 0 is background; detection labels 1..K map to the dataset's category ids through the checkpoint's
  `category_ids`; segmentation masks use 255 for void.
- Tasks are declared once, in `mobilevision.tasks.table`; code outside `mobilevision/tasks` asks the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "build_model",
    "Predictor",
    "MODELS",
    "train",
    "TrainResult",
    "config_paths",
    "resolve_config",
    "__version__",
]

if TYPE_CHECKING:
    from mobilevision.inference.predictor import Predictor


def __getattr__(name: str) -> Any:
    # Lazy so `import mobilevision` stays cheap (the CLI imports it for every command).
    if name in ("build_model", "MODELS"):
        from mobilevision import models

        return getattr(models, name)
    if name in ("train", "TrainResult"):
        from mobilevision import api

        return getattr(api, name)
    if name in ("config_paths", "resolve_config"):
        from mobilevision import configs

        return getattr(configs, name)
    if name == "Predictor":
        from mobilevision.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'mobilevision' has no attribute {name!r}")
