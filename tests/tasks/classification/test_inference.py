"""The classification adapter: resize to the checkpoint's size, top-5 softmax, COCO-style result entries."""

from __future__ import annotations

import numpy as np
import torch

from mobilevision.checkpoint import ModelMeta
from mobilevision.models import build_model
from mobilevision.tasks.classification.inference import ClassificationInference, export_module


def test_top5_results_and_export_surface() -> None:
    model = build_model("image_classifier_mobilenet_v2", num_classes=7, width_mult=0.35).eval()
    meta = ModelMeta.for_model(model, model_name="image_classifier_mobilenet_v2", input_size=(32, 48))
    adapter = ClassificationInference(model, meta, {})
    assert adapter.prepare(np.zeros((10, 20, 3), np.uint8)).shape == (32, 48, 3)
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, 3.0, 4.0, -1.0]])
    result = adapter.result([logits], 0, (10, 20))
    assert result["labels"] == [1, 5, 4, 3, 2]
    assert abs(sum(result["scores"]) - float(logits.softmax(-1)[0, [1, 5, 4, 3, 2]].sum())) < 1e-6
    entries = adapter.results(result, 9)
    assert entries[0] == {"image_id": 9, "category_id": 1, "score": result["scores"][0]}
    assert adapter.draw(np.zeros((40, 60, 3), np.uint8), result).shape == (40, 60, 3)
    with torch.no_grad():
        (out,) = export_module(model)(torch.zeros(1, 3, 32, 48))
    assert out.shape == (1, 7)
