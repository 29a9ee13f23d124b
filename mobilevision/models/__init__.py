"""Every plain `nn.Module` of mobilevision and its builder: backbones, heads, the detector (with its default boxes,
box coder and post-processor), the segmenter and the joint model.

Models know no task, no Lightning and no dataset: tasks, inference, export and the CLI import them, never the other
way round (`tests/models/test_imports.py` holds that). `build_model` and `MODELS` name the builders lazily.
"""

from mobilevision.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
