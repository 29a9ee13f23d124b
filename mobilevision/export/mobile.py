"""`export --format tflite | executorch`: the file, its metadata and a session that runs it (the parity gate:
`mobilevision.export.mobile_check`).

The file holds the task's raw surface at a fixed input size, batch 1 (`mobilevision.export.tflite`, `.executorch`).
Its metadata (the same entries an ONNX file has in `metadata_props`: `mobilevision` = `ModelMeta.to_dict()` with the
export's input size, plus the task's `export_metadata`, e.g. a detector's post-processing) goes into a JSON file
beside it, `NAME.tflite.json` / `NAME.pte.json`: neither runtime's Python API reads custom metadata back, and an app
ships the class names beside the model anyway.

`MobileSession(path)` runs the file with the onnxruntime session's interface (`run(names, {"images": float32
[B, 3, H, W]})` -> numpy outputs, `get_inputs()`), looping over the batch, so `Predictor`, `parity_check` and
`session_parity` use it unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import META_KEY, ModelMeta
from mobilevision.errors import UserError, WeightsError
from mobilevision.io import atomic_path
from mobilevision.tasks.table import get_task, load, task_of_model

SUFFIXES = {"tflite": ".tflite", "executorch": ".pte"}
FORMAT_OF_SUFFIX = {suffix: fmt for fmt, suffix in SUFFIXES.items()}
EXTRAS = {"tflite": "litert-torch", "executorch": "executorch"}
# XNNPACK's fp32 kernels (both runtimes' CPU engine) sum in another order than torch's: 1.9e-4 of the outputs' scale
# measured on the width-0.5 detector at 320 (docs/mobile-runtimes.md), above the 1e-4 the ONNX export holds to.
MOBILE_TOLERANCE = 1e-3
# The metadata entry naming a file's outputs when they are not the task's raw surface (`export --nms`).
OUTPUTS_KEY = "mobilevision.outputs"


def metadata_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{path}.json")


def export_mobile(
    model: nn.Module,
    path: str | os.PathLike[str],
    meta: ModelMeta,
    *,
    fmt: str,
    input_size: tuple[int, int],
    int8: bool = False,
    calibration: Sequence[Tensor] = (),
    extra: dict[str, Any] | None = None,
    surface: nn.Module | None = None,
) -> Path:
    """Write `model`'s `fmt` file ("tflite" or "executorch") and its metadata JSON, each atomically. `surface`
    replaces the task's raw surface in the file (its output names then go in `extra` as `OUTPUTS_KEY`)."""
    _require(fmt)
    model = model.eval()
    if fmt == "tflite":
        from mobilevision.export.tflite import export_tflite

        data = export_tflite(model, input_size, int8=int8, calibration=calibration, surface=surface)
    else:
        from mobilevision.export.executorch import export_pte

        data = export_pte(model, input_size, int8=int8, calibration=calibration, surface=surface)
    meta_dict = meta.to_dict()
    meta_dict["input_size"] = list(input_size)
    entries: dict[str, Any] = {META_KEY: meta_dict, "mobilevision.format": fmt + (" int8" if int8 else " fp32")}
    task = task_of_model(model)
    if task.export_metadata:
        entries.update(load(task.export_metadata)(model))
    entries.update(extra or {})
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    with atomic_path(metadata_path(path)) as tmp:
        tmp.write_text(json.dumps(entries, indent=1))
    return path


def read_mobile_metadata(path: str | os.PathLike[str]) -> tuple[ModelMeta, dict[str, Any]]:
    """ModelMeta and the other metadata entries of an exported `.tflite` / `.pte` (its JSON beside it)."""
    side = metadata_path(path)
    try:
        entries = json.loads(side.read_text())
        meta = ModelMeta.from_dict(entries.pop(META_KEY))
    except FileNotFoundError:
        raise WeightsError(f"{side}: missing; export the model with `mobilevision export --format ...`") from None
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{side}: not mobilevision metadata ({error})") from None
    return meta, entries


def _require(fmt: str) -> None:
    """A one-line error naming the extra to install when `fmt`'s packages are absent."""
    import importlib.util

    modules = {"tflite": ("litert_torch", "ai_edge_litert"), "executorch": ("executorch",)}[fmt]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"--format {fmt} needs {', '.join(missing)}: pip install 'mobilevision[{fmt}]' ({EXTRAS[fmt]})")


class _Input:
    def __init__(self, shape: list[int]) -> None:
        self.name, self.shape = "images", shape


class MobileSession:
    """A `.tflite` (LiteRT interpreter) or `.pte` (ExecuTorch runtime) file behind onnxruntime's session interface.

    Args:
        model: the file's path.
        num_threads: the runtime's CPU threads (None: `torch.get_num_threads()`, as `make_session`).
    """

    def __init__(self, model: str | os.PathLike[str], *, num_threads: int | None = None) -> None:
        path = Path(model)
        fmt = FORMAT_OF_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{path}: not a .tflite or .pte file")
        self.meta, self.metadata = read_mobile_metadata(path)
        self.format = fmt
        _require_runtime(fmt)
        threads = int(num_threads) if num_threads is not None else torch.get_num_threads()
        data = path.read_bytes()
        try:
            if fmt == "tflite":
                from mobilevision.export.tflite import TfliteRunner

                self.runner: Any = TfliteRunner(data, num_threads=threads)
            else:
                from mobilevision.export.executorch import PteRunner

                self.runner = PteRunner(data, num_threads=threads)
        except Exception as error:  # noqa: BLE001 - each runtime raises its own types
            raise WeightsError(f"{path}: the {fmt} runtime cannot load it ({str(error).splitlines()[0]})") from None
        spec = get_task(self.meta.task)
        self.output_names = list(self.metadata.get(OUTPUTS_KEY, spec.onnx_outputs))
        self.constant = set(spec.constant_outputs) & set(self.output_names)

    def get_inputs(self) -> list[_Input]:
        return [_Input([1, 3, *self.meta.input_size])]

    def run(self, names: Sequence[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs (`names`, default all, in the task's order) for `feed["images"]` float32 [B, 3, H, W]."""
        images = torch.from_numpy(np.ascontiguousarray(feed["images"], dtype=np.float32))
        runs = [self.runner(images[i : i + 1]) for i in range(images.shape[0])]
        outputs = {
            name: (column[0] if name in self.constant else torch.cat(column)).numpy()
            for name, column in zip(self.output_names, zip(*runs))
        }
        return [outputs[name] for name in (names or self.output_names)]


def _require_runtime(fmt: str) -> None:
    import importlib.util

    module = {"tflite": "ai_edge_litert", "executorch": "executorch"}[fmt]
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"running a .{'pte' if fmt == 'executorch' else fmt} file needs {module}: pip install 'mobilevision[{fmt}]'"
        )
