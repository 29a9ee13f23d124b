"""The checkpoint contract shared by training and inference, and loading without executing code.

A mobilevision checkpoint is a Lightning checkpoint (a dict) holding, besides Lightning's own entries:

- `checkpoint["mobilevision"]`: `ModelMeta.to_dict()`, plain values only: how to rebuild the network
  (`build_model(model_name, **model_kwargs)`), the class names and dataset ids, the input size it was trained at.
- `checkpoint["state_dict"]`: the LightningModule's state, the network under the prefix `model.` and, when training
  keeps an exponential moving average, its copy under `ema_model.` (preferred when present: it is the better model).

Every load goes through `torch.load(..., map_location="cpu", weights_only=True)`: the unpickler only rebuilds tensors,
plain containers and the few types in `SAFE_GLOBALS`, so a file whose pickle would call code (`os.system` in a
`__reduce__`, say) is refused before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mobilevision.errors import UserError, WeightsError
from mobilevision.io import atomic_path

META_KEY = "mobilevision"
META_VERSION = 1

# Non-tensor types a mobilevision checkpoint may hold, allowed explicitly for the weights-only unpickler. Lightning's
# own entries (loops, callbacks, optimizer and scheduler states, hyper-parameters of plain values) need none.
SAFE_GLOBALS: list[Any] = []

# State-dict prefixes tried in order: the EMA copy first (a plain copy of the network, `BaseTask.ema_model`), then
# the network itself.
_PREFIXES: tuple[str, ...] = ("ema_model.", "model.")


@dataclass
class ModelMeta:
    """What inference needs to know about a trained network, stored with its weights.

    Attributes:
        task: a task name of the task table (`mobilevision.tasks.table.TASKS`: "detection", "segmentation", ...).
        model_name: a `mobilevision.models.MODELS` short name.
        model_kwargs: keyword arguments of the builder (plain values: str, int, float, bool, None, lists, dicts).
        class_names: one name per model output class; index 0 is "background".
        category_ids: detection only: `category_ids[label]` is the dataset's id of contiguous label `label`
            (index 0, background, is unused and conventionally 0). None for segmentation or when ids are the labels.
        input_size: (height, width) the model was trained at. Detection resizes every image to it; segmentation
            pads every image (bottom/right, ImageNet mean) to at least this size, then to a multiple of
            `inference["pad_multiple"]`: the evaluation protocol of the segmentation DataModules.
        inference: how evaluation ran, so the predictor does the same (plain values; segmentation:
            `pad_multiple`, `output_stride`, `multi_scale_flip`, `mf_scales`). Empty in checkpoints written before
            it existed: the predictor then pads to a multiple of the model's output stride.
        mask_class_names: the segmentation head's class names when the model also has a detector (the multi-task
            model: `class_names` are then the detector's, with their `category_ids`); None otherwise.
    """

    task: str
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    category_ids: list[int] | None = None
    input_size: tuple[int, int] = (320, 320)
    inference: dict[str, Any] = field(default_factory=dict)
    mask_class_names: list[str] | None = None

    def __post_init__(self) -> None:
        from mobilevision.tasks.table import get_task

        get_task(self.task)  # a ValueError naming the known tasks
        if len(self.input_size) != 2 or min(int(v) for v in self.input_size) < 1:
            raise ValueError(f"input_size must be (height, width) > 0, got {self.input_size}")
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.category_ids is not None and self.class_names and len(self.category_ids) != len(self.class_names):
            raise ValueError(
                f"category_ids has {len(self.category_ids)} entries but class_names has {len(self.class_names)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["version"] = META_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        if not isinstance(data, Mapping):
            raise WeightsError(f"checkpoint metadata must be a mapping, got {type(data).__name__}")
        known = {
            "task",
            "model_name",
            "model_kwargs",
            "class_names",
            "category_ids",
            "input_size",
            "inference",
            "mask_class_names",
        }
        missing = {"task", "model_name"} - set(data)
        if missing:
            raise WeightsError(f"checkpoint metadata lacks {sorted(missing)}")
        try:
            return cls(
                task=data["task"],
                model_name=str(data["model_name"]),
                model_kwargs=dict(data.get("model_kwargs") or {}),
                class_names=[str(n) for n in data.get("class_names") or []],
                category_ids=None if data.get("category_ids") is None else [int(i) for i in data["category_ids"]],
                input_size=tuple(data.get("input_size") or (320, 320)),  # type: ignore[arg-type]
                inference=dict(data.get("inference") or {}),
                mask_class_names=None
                if data.get("mask_class_names") is None
                else [str(n) for n in data["mask_class_names"]],
            )
        except (TypeError, ValueError) as error:
            raise WeightsError(f"invalid checkpoint metadata ({error}); keys: {sorted(set(data) & known)}") from None

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        *,
        model_name: str = "",
        model_kwargs: dict[str, Any] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> ModelMeta:
        """Metadata for a bare model (no dataset): its task from the task table, classes named "background",
        "class_1", ..., and the task's default input size.

        Raises:
            ValueError: a module of no registered task.
        """
        from mobilevision.tasks.table import task_of_model

        task = task_of_model(model)
        num_classes = int(model.num_classes)  # type: ignore[arg-type]
        names = default_class_names(num_classes)
        mask_classes = getattr(model, "seg_num_classes", None)
        return cls(
            task=task.name,
            model_name=model_name,
            model_kwargs=dict(model_kwargs or {}),
            class_names=names,
            category_ids=list(range(num_classes)) if task.category_ids else None,
            input_size=input_size or task.default_input_size,
            mask_class_names=None if mask_classes is None else default_class_names(int(mask_classes)),
        )


def default_class_names(num_classes: int) -> list[str]:
    """Names for a model trained on no named dataset: "background", "class_1", ..., "class_{num_classes - 1}"."""
    return ["background"] + [f"class_{i}" for i in range(1, num_classes)]


def refusal_cause(error: BaseException) -> str:
    """The one line of a `torch.load(weights_only=True)` refusal that says why: the GLOBAL it refused, or the line
    after "WeightsUnpickler error:" (e.g. "Unsupported operand 0" for a file that is not a pickle at all). torch's
    message starts with a paragraph about its defaults, which would bury it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.endswith("WeightsUnpickler error:")]
    return next(
        (line for line in lines if "GLOBAL" in line.upper()),
        after[0] if after else lines[0] if lines else type(error).__name__,
    )


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """`torch.load` with `weights_only=True` and our explicit allow-list; any refusal becomes a `WeightsError`."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: file not found")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        cause = refusal_cause(error)
        unsafe = "weights only load failed" in str(error).lower() or "unsupported global" in str(error).lower()
        reason = (
            "it holds pickled objects other than tensors and plain containers (possibly code), refused unread"
            if unsafe
            else "not a readable torch checkpoint"
        )
        raise WeightsError(f"{path}: {reason} ({cause})") from None


def extract_state_dict(
    state: Mapping[str, Any], model_keys: set[str], *, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """The network's weights out of a LightningModule state_dict: EMA copy if present, else `model.`.

    Raises:
        WeightsError: when no prefix yields exactly the model's keys (the message lists what differs).
    """
    for prefix in _PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub and set(sub) == model_keys:
            return sub
    sub = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    if not sub:
        raise WeightsError(
            f"{source}: no weights under 'model.' or 'ema_model.' in its state_dict (first keys: {list(state)[:5]})"
        )
    missing, unexpected = sorted(model_keys - set(sub)), sorted(set(sub) - model_keys)
    raise WeightsError(
        f"{source}: weights do not fit the model: {len(missing)} missing keys (first: {missing[:5]}), "
        f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})"
    )


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelMeta]:
    """Rebuild the network of a mobilevision checkpoint and load its weights strictly (eval mode, on CPU).

    Raises:
        WeightsError: missing or unreadable file, pickled code, a plain state_dict without metadata, or weights that
            do not fit the model the metadata describes.
    """
    from mobilevision.models import build_model

    path = Path(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or META_KEY not in obj:
        plain = isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values())
        what = "a plain state_dict" if plain else "not a mobilevision checkpoint"
        raise WeightsError(
            f"{path}: {what} (no '{META_KEY}' entry saying which model it is). A mobilevision checkpoint (written by "
            "`mobilevision fit` or `mobilevision.checkpoint.save_checkpoint`) is needed; for bare weights name the "
            "network with `--model NAME` (Python: build_model(NAME).load_state_dict(...))"
        )
    meta = ModelMeta.from_dict(obj[META_KEY])
    state = obj.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: 'state_dict' is missing or holds non-tensors")
    try:
        model = build_model(meta.model_name, **meta.model_kwargs)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: cannot rebuild {meta.model_name!r} with {meta.model_kwargs}: {error}") from None
    weights = extract_state_dict(state, set(model.state_dict()), source=str(path))
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:  # shape mismatches
        raise WeightsError(
            f"{path}: weights do not fit {meta.model_name}: {str(error).splitlines()[-1].strip()}"
        ) from None
    return model.eval(), meta


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, meta: ModelMeta, *, ema_model: nn.Module | None = None
) -> Path:
    """Write `model` (and an optional EMA copy) in the layout `load_checkpoint` reads, atomically.

    The file is also a valid Lightning checkpoint body (`state_dict` with `model.` prefixes), so tests and users can
    make checkpoints without training.
    """
    state = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    if ema_model is not None:
        state.update({f"ema_model.{k}": v.detach().cpu() for k, v in ema_model.state_dict().items()})
    payload = {
        META_KEY: meta.to_dict(),
        "state_dict": state,
        "pytorch-lightning_version": "n/a",
        "epoch": 0,
        "global_step": 0,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def model_from_name(
    name: str, *, num_classes: int | None = None, width_mult: float | None = None, purpose: str = "used"
) -> tuple[nn.Module, ModelMeta]:
    """An untrained detector or segmenter by `build_model` name, with its metadata (for `--model NAME` options).

    Raises:
        UserError: an unknown name or argument, or a model of no task (a bare classifier, say).
    """
    from mobilevision.models import build_model

    kwargs = {k: v for k, v in (("num_classes", num_classes), ("width_mult", width_mult)) if v is not None}
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as error:
        raise UserError(f"--model {name}: {error}") from None
    try:
        return model, ModelMeta.for_model(model, model_name=name, model_kwargs=kwargs)
    except ValueError as error:
        raise UserError(f"--model {name}: cannot be {purpose}: {error}") from None
