"""The interface between `Predictor` (and `mobilevision predict`'s sinks) and a task: its inference adapter.

The task table names each task's adapter class (`Task.inference`); `Predictor` builds it as
`cls(model_or_none, meta, options)` (`model` None for an exported file, whose metadata is then in
`options["metadata"]`) and uses it only through the members below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor


@runtime_checkable
class TaskAdapter(Protocol):
    """What a task's `Predictor` adapter provides.

    Attributes:
        drawn_folder: the folder (under `predict`'s output) the drawn images go to, e.g. "annotated".
        video_suffix: the suffix of a drawn video's name, `<stem>_<suffix>.mp4`.
        writes_results: whether `predict` writes a `predictions.json` of `results` entries.
    """

    drawn_folder: str
    video_suffix: str
    writes_results: bool

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The network's input for one RGB uint8 (H, W, 3) image, HWC uint8 (images prepared to one shape are
        batched together)."""
        ...

    def run(self, network: Any, batch: Tensor) -> list[Tensor]:
        """The raw outputs (the task's `onnx_outputs`, in order) of a uint8/float NCHW batch, `network(batch)` being
        the torch module or the onnxruntime session (an adapter may run several passes, e.g. multi-scale)."""
        ...

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        """Image `index`'s result at its own (H, W): the task's result dict (boxes, a mask, ...)."""
        ...

    def classes(self) -> dict[str, Any]:
        """The label space written to `predict`'s `classes.json` (class names, dataset ids)."""
        ...

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        """The image with `result` drawn on it, RGB uint8 (H, W, 3); `still` is False for video frames."""
        ...

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        """The `predictions.json` entries of one image (COCO results for detection); [] when none."""
        ...

    def save(self, out: Path, name: str, result: dict[str, Any]) -> str | None:
        """Write a per-image file of the result (a segmentation mask PNG) under `out`; its path, or None."""
        ...


# The members, read off the Protocol's body (its annotations and its methods), so the two cannot drift apart.
MEMBERS: tuple[str, ...] = tuple(TaskAdapter.__annotations__) + tuple(
    name for name, value in vars(TaskAdapter).items() if callable(value) and not name.startswith("_")
)


def check_adapter(adapter: Any) -> TaskAdapter:
    """`adapter`, after checking it has every `TaskAdapter` member.

    Raises:
        TypeError: naming the adapter's class and the members it lacks.
    """
    missing = [name for name in MEMBERS if not hasattr(adapter, name)]
    if missing:
        raise TypeError(f"{type(adapter).__name__} is not a Predictor adapter: it lacks {', '.join(missing)}")
    return adapter
