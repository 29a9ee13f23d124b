"""The task table: a third task added through the table alone runs through checkpoints, `Predictor` (torch and
onnxruntime), ONNX export and `mobilevision predict`'s outputs, with no change anywhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mobilevision.export.onnx import export_onnx, make_session, parity_check
from mobilevision.inference.predictor import Predictor
from mobilevision.inference.sinks import predict_source
from mobilevision.inference.sources import open_source
from mobilevision.models import registry
from mobilevision.tasks import table
from mobilevision.tasks.table import Task, get_task, task_of_model


class ToyClassifier(nn.Module):
    """A whole-image classifier: images [B, 3, H, W] 0..255 -> logits [B, C]."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images.float() / 255))


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor]:
        return (self.model(images),)


def export_module(model: nn.Module) -> nn.Module:
    return _Logits(model)


class ToyInference:
    """The adapter: resize to 32x32, one label per image."""

    drawn_folder = "labelled"
    video_suffix = "labelled"
    writes_results = False

    def __init__(self, model: nn.Module | None, meta: Any, options: dict[str, Any]) -> None:
        self.class_names = list(meta.class_names)

    def classes(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)

    def run(self, network: Any, batch: Tensor) -> list[Tensor]:
        return network(batch)

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        scores = outputs[0][index].softmax(-1)
        label = int(scores.argmax())
        return {"label": label, "name": self.class_names[label], "scores": scores.numpy()}

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        return image

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        return []

    def save(self, out: Any, name: str, result: dict[str, Any]) -> str | None:
        return None


@pytest.fixture()
def toy_task(monkeypatch: pytest.MonkeyPatch) -> Task:
    """The toy task and its model builder, registered for one test (the table and MODELS are restored after)."""
    monkeypatch.setattr(table, "TASKS", dict(table.TASKS))
    monkeypatch.setattr(registry, "MODELS", {**registry.MODELS, "toy_classifier": ToyClassifier})
    return table.register(
        Task(
            name="toy-classification",
            model_class=f"{__name__}:ToyClassifier",
            inference=f"{__name__}:ToyInference",
            export_module=f"{__name__}:export_module",
            onnx_outputs=("logits",),
            default_input_size=(32, 32),
        )
    )


def test_a_third_task_through_the_table_alone(toy_task: Task, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ToyClassifier().eval()
    assert task_of_model(model) is toy_task
    meta = ModelMeta.for_model(model, model_name="toy_classifier")
    assert meta.task == "toy-classification" and meta.input_size == (32, 32) and meta.category_ids is None

    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    direct = Predictor(model, meta=meta)(image)
    # A checkpoint of the new task round-trips (the builder by name, metadata checked against the table).
    path = save_checkpoint(tmp_path / "toy.ckpt", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert isinstance(loaded, ToyClassifier) and loaded_meta == meta
    from_checkpoint = Predictor(path)(image)
    assert from_checkpoint["label"] == direct["label"]
    np.testing.assert_allclose(from_checkpoint["scores"], direct["scores"], atol=1e-6)

    # ONNX export, its parity check and the onnxruntime Predictor know nothing of this task but the table's entry.
    onnx_path = export_onnx(model, tmp_path / "toy.onnx", meta)
    report = parity_check(model, make_session(onnx_path), input_size=(32, 32))
    assert report.ok() and list(report.max_abs_diff) == ["logits"]
    exported = Predictor(onnx_path)(image)
    np.testing.assert_allclose(exported["scores"], direct["scores"], atol=1e-5)

    # `mobilevision predict`'s writer: the adapter's folder and the class names.
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), image)
    summary = predict_source(Predictor(path), open_source(str(folder)), tmp_path / "out", progress=False)
    assert summary.frames == 1 and (tmp_path / "out" / "labelled" / "a.jpg").is_file()
    assert (tmp_path / "out" / "classes.json").read_text().count("class_2") == 1


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known tasks: detection, segmentation"):
        get_task("tracking")
    with pytest.raises(ValueError, match="detection, segmentation"):
        ModelMeta(task="tracking", model_name="x")
