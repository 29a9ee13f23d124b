"""The task table: a third task added through the table alone runs through checkpoints, `Predictor` (torch and
onnxruntime), ONNX export and `mobilevision predict`'s outputs, with no change anywhere else; and the package has no
import cycle."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from mobilevision import models
from mobilevision.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mobilevision.export.onnx import export_onnx, make_session, parity_check
from mobilevision.inference.predictor import Predictor
from mobilevision.inference.sinks import predict_source
from mobilevision.inference.sources import open_source
from mobilevision.tasks import table
from mobilevision.tasks.table import Task, get_task, task_of_model

PACKAGE = Path(__file__).resolve().parents[2] / "mobilevision"


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
    monkeypatch.setattr(models, "MODELS", {**models.MODELS, "toy_classifier": ToyClassifier})
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
        get_task("classification")
    with pytest.raises(ValueError, match="detection, segmentation"):
        ModelMeta(task="classification", model_name="x")


def _module_imports(path: Path) -> set[str]:
    """The mobilevision modules a file imports at module level (imports inside functions are lazy: not a cycle)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("mobilevision")}


def test_the_package_has_no_import_cycle() -> None:
    """The module-level import graph of the package is acyclic (checkpoint once imported the detection model inside
    functions to dodge a cycle with tasks/base.py; the task table removed the need)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {name: {m for m in _module_imports(path) if m in modules and m != name} for name, path in modules.items()}
    # An import of `a.b.c` imports the packages `a` and `a.b` first (their __init__ runs before `c`'s code). For an
    # importer inside `a.b` that package is imported before its own code runs, so the edge is not one its code makes.
    for name in list(graph):
        packages = {".".join(m.split(".")[:i]) for m in graph[name] for i in range(1, m.count(".") + 1)}
        graph[name] |= {p for p in packages if p in modules and p != name and not name.startswith(p + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                raise AssertionError(f"import cycle: {' -> '.join(trail[trail.index(nxt) :] + [node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
