"""The classification task's `Predictor` adapter and exported surface: an image resized to the checkpoint's input
size, its logits, the top-5 classes with their softmax probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import Tensor, nn

TOP_K = 5


class _Logits(nn.Module):
    """ImageClassifier -> (logits,): the exported surface, a tuple like every task's."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: Tensor) -> tuple[Tensor]:
        return (self.classifier(images),)


def export_module(model: nn.Module) -> nn.Module:
    return _Logits(model)


class ClassificationInference:
    """Resize to the checkpoint's `input_size` (or the `input_size` option), classify, keep the top 5."""

    drawn_folder = "annotated"
    video_suffix = "annotated"
    writes_results = True

    def __init__(self, model: nn.Module | None, meta: Any, options: dict[str, Any]) -> None:
        size = options.get("input_size") or meta.input_size
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.class_names = list(meta.class_names)

    def classes(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        h, w = self.size
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)

    def run(self, network: Any, batch: Tensor) -> list[Tensor]:
        return [network(batch)[0]]

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        probs = outputs[0][index].float().softmax(-1)
        top = probs.topk(min(TOP_K, probs.numel()))
        return {"labels": top.indices.tolist(), "scores": top.values.tolist()}

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        out = np.ascontiguousarray(image.copy())
        label, score = result["labels"][0], result["scores"][0]
        text = f"{self.class_names[label] if label < len(self.class_names) else label} {score:.2f}"
        cv2.putText(out, text, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        return out

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        return [
            {"image_id": image_id, "category_id": int(label), "score": float(score)}
            for label, score in zip(result["labels"], result["scores"])
        ]

    def save(self, out: Path, name: str, result: dict[str, Any]) -> str | None:
        return None
