"""The task table: what the rest of mobilevision needs from each task, declared in one place.

Checkpoints, ONNX export, `Predictor`, `mobilevision data check` and `mobilevision evaluate` consult this table; none
of them names a task. A new task (the multi-task model, classification) is a folder under `tasks/` plus one entry
here (or one `register()` call, as the tests' toy task does).

Entries hold import paths ("module:attribute"), imported only when used, so reading the table costs nothing and
creates no import cycle (the task packages import `checkpoint`, which imports this module).

Contract of the hooks an entry points to:
- `model_class`: the plain `nn.Module` a model of this task is (`isinstance` decides a bare module's task).
- `inference`: a class built as `cls(model_or_none, meta, options)` providing
    `mobilevision.inference.adapter.TaskAdapter` (what `Predictor` and `predict`'s sinks use; checked when built).
- `export_module(model) -> nn.Module`: the exported surface, returning the `onnx_outputs` tensors in order (also
    what the torch backend of `Predictor` runs, so both backends compute the same thing).
- `export_metadata(model) -> dict`: extra JSON-able metadata stored in the ONNX file (post-processing parameters).
- `checkers`: `mobilevision data check --format NAME` -> a function `(args) -> DefectReport`.
- `evaluate`: `mobilevision evaluate NAME` -> a `main(argv) -> int`. (Benchmarks are listed in
    `mobilevision.benchmarks`, not here.)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task", "TASKS", "get_task", "load", "register", "task_of_model"]


@dataclass(frozen=True)
class Task:
    """One task's declarations (see the module docstring for each hook's contract).

    Attributes:
        name: the task's name in checkpoints, ONNX metadata and `Predictor.task`.
        model_class: "module:Class" of its plain `nn.Module`.
        inference: "module:Class" of its `Predictor` adapter.
        export_module: "module:function" wrapping a model into the exported surface.
        export_metadata: "module:function" giving the extra ONNX metadata, or None.
        onnx_outputs: names of the raw outputs, in order.
        constant_outputs: outputs that are constants of the input size (a detector's default boxes): no batch axis,
            stored in the graph as one Constant node.
        compare: "module:function" comparing two runs' results (export parity, int8 checks) beyond the raw
            outputs: `(source, reference, other, *, input_size, thresholds, **options) -> list[dict]`, `source` the
            torch model or the exported metadata; None compares raw outputs only.
        dynamic_spatial: whether the exported graph takes any input height and width (segmentation) or only the
            model's input size (detection: its default boxes are constants of it).
        default_input_size: (h, w) a bare model (no checkpoint) runs at.
        category_ids: whether its checkpoints carry the dataset's category ids (detection's COCO ids).
        checkers: `data check` formats this task reads -> "module:function".
        evaluate: "module:function" of `mobilevision evaluate <name>`, or None.
        trains: whether the task has a training module and shipped configs (classification is inference-only:
            converted ImageNet classifiers, predict and export).
    """

    name: str
    model_class: str
    inference: str
    export_module: str
    onnx_outputs: tuple[str, ...]
    export_metadata: str | None = None
    constant_outputs: tuple[str, ...] = ()
    compare: str | None = None
    dynamic_spatial: bool = False
    default_input_size: tuple[int, int] = (320, 320)
    category_ids: bool = False
    checkers: dict[str, str] = field(default_factory=dict)
    evaluate: str | None = None
    trains: bool = True


def load(path: str) -> Any:
    """The object an import path "package.module:attribute" names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


# The registration: the one place in the package that lists the tasks.
TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add (or replace) a task in the table; returns it."""
    TASKS[task.name] = task
    return task


register(
    Task(
        name="detection",
        model_class="mobilevision.models.detector:Detector",
        inference="mobilevision.tasks.detection.inference:DetectionInference",
        export_module="mobilevision.tasks.detection.inference:export_module",
        export_metadata="mobilevision.tasks.detection.inference:export_metadata",
        onnx_outputs=("cls_logits", "bbox_regression", "anchors"),
        constant_outputs=("anchors",),
        compare="mobilevision.tasks.detection.parity:compare",
        default_input_size=(320, 320),
        category_ids=True,
        checkers={
            "coco": "mobilevision.tasks.detection.check:check_coco",
            "voc-det": "mobilevision.tasks.detection.check:check_voc",
            "detection": "mobilevision.tasks.detection.check:check_custom",
        },
        evaluate="mobilevision.tasks.detection.evaluate_cli:main",
    )
)
register(
    Task(
        name="segmentation",
        model_class="mobilevision.models.segmenter:Segmenter",
        inference="mobilevision.tasks.segmentation.inference:SegmentationInference",
        export_module="mobilevision.tasks.segmentation.inference:export_module",
        onnx_outputs=("logits",),
        dynamic_spatial=True,
        default_input_size=(512, 512),
        checkers={
            "voc-seg": "mobilevision.tasks.segmentation.check:check_voc",
            "seg-folder": "mobilevision.tasks.segmentation.check:check_folder",
        },
        evaluate="mobilevision.tasks.segmentation.evaluation:main",
    )
)


register(
    Task(
        name="multitask",
        model_class="mobilevision.models.multitask:MultiTaskModel",
        inference="mobilevision.tasks.multitask.inference:MultiTaskInference",
        export_module="mobilevision.tasks.multitask.inference:export_module",
        export_metadata="mobilevision.tasks.detection.inference:export_metadata",
        onnx_outputs=("cls_logits", "bbox_regression", "anchors", "mask_logits"),
        constant_outputs=("anchors",),
        compare="mobilevision.tasks.multitask.inference:compare",
        default_input_size=(320, 320),
        category_ids=True,
    )
)
register(
    Task(
        name="classification",
        model_class="mobilevision.models.classifier:ImageClassifier",
        inference="mobilevision.tasks.classification.inference:ClassificationInference",
        export_module="mobilevision.tasks.classification.inference:export_module",
        onnx_outputs=("logits",),
        default_input_size=(224, 224),
        trains=False,
    )
)


def get_task(name: str) -> Task:
    """The table entry of `name`.

    Raises:
        ValueError: an unknown task, listing the known ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def task_of_model(model: Any) -> Task:
    """The task whose model class `model` is an instance of.

    Raises:
        ValueError: a module of no registered task, or of several (model classes do not inherit from each other).
    """
    matches = [task for task in TASKS.values() if isinstance(model, load(task.model_class))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"{type(model).__name__} is not the model of any task ({', '.join(TASKS)})")
    raise ValueError(f"{type(model).__name__} is the model of several tasks: {', '.join(t.name for t in matches)}")
