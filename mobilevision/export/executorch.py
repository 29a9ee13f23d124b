"""ExecuTorch export (`.pte`, XNNPACK-delegated), fp32 and int8, and a runner for the file (prototype, issue 26).

What is exported is the task's raw surface (`Task.export_module`, as for ONNX) at a fixed input size:
input float32 [1, 3, H, W] RGB 0..255, outputs the task's `onnx_outputs` in order (a detector's cls_logits
[1, A, C], bbox_regression [1, A, 4], anchors [A, 4]; a segmenter's logits [1, C, H, W]).

fp32: `torch.export` -> `to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])` -> `.to_executorch()`.
int8: the pt2e flow (torchao's `prepare_pt2e` / `convert_pt2e`) with ExecuTorch's `XNNPACKQuantizer`, symmetric
int8 weights per output channel, int8 activations calibrated on the given images, then the same lowering (XNNPACK
takes the quantize/dequantize pairs and runs the integer kernels).

Needs `pip install executorch` (1.5.1 tested beside torch 2.14.1: docs/mobile-runtimes.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mobilevision.tasks.table import load, task_of_model


def export_surface(model: nn.Module) -> nn.Module:
    """The task's exported surface of `model` (raw outputs, `Task.export_module`), in eval mode."""
    model = model.eval()
    return load(task_of_model(model).export_module)(model).eval()


def _quantize_pt2e(surface: nn.Module, example: Tensor, calibration: Sequence[Tensor]) -> nn.Module:
    """pt2e int8: per-channel symmetric int8 weights, int8 activations from MinMax observers over `calibration`
    (each float [1, 3, H, W], RGB 0..255)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(surface, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
    with torch.no_grad():
        for image in calibration:
            prepared(image)
    return convert_pt2e(prepared)


def export_pte(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    int8: bool = False,
    calibration: Sequence[Tensor] = (),
    surface: nn.Module | None = None,
) -> bytes:
    """The `.pte` program of `model`'s raw surface at `input_size` (h, w), XNNPACK-delegated.

    Args:
        int8: quantize (pt2e, XNNPACKQuantizer, per-channel weights) calibrated on `calibration`.
        calibration: float [1, 3, h, w] images, RGB 0..255 (required with `int8`).
        surface: the module to export instead of the task's raw surface (`export --nms`: `StaticNmsDetector`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if int8 and not calibration:
        raise ValueError("int8 export needs calibration images")
    surface = export_surface(model) if surface is None else surface.eval()
    example = torch.zeros(1, 3, *input_size)
    with torch.no_grad():
        # One eager call fills the detector's anchor cache: the anchors become a constant of the program instead
        # of float64 arithmetic in it (which litert-torch 0.10.0 cannot legalize: `tfl.broadcast_to` on f64).
        surface(example)
        if int8:
            surface = _quantize_pt2e(surface, example, calibration)
        program = torch.export.export(surface, (example,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        return lowered.to_executorch().buffer


class PteRunner:
    """Runs a `.pte` program with ExecuTorch's runtime (`executorch.runtime`), XNNPACK's threadpool at
    `num_threads`; `__call__(images float [1, 3, H, W]) -> list of output tensors` (the task's `onnx_outputs`)."""

    def __init__(self, program: bytes, *, num_threads: int = 1) -> None:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(int(num_threads))
        self.program = Runtime.get().load_program(program)
        self.method = self.program.load_method("forward")

    def __call__(self, images: Tensor) -> list[Tensor]:
        outputs: Any = self.method.execute([images.float().contiguous()])
        return [torch.as_tensor(o) for o in outputs]
