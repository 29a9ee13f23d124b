"""LiteRT (`.tflite`) export through litert-torch, fp32 and int8, and a runner on the LiteRT interpreter
(prototype, issue 26).

What is exported is the task's raw surface (`Task.export_module`, as for ONNX) at a fixed input size: input float32
[1, 3, H, W] RGB 0..255 (NCHW as in torch: litert-torch inserts the transposes to its NHWC kernels), outputs the
task's `onnx_outputs` in order (a detector's cls_logits [1, A, C], bbox_regression [1, A, 4], anchors [A, 4]; a
segmenter's logits [1, C, H, W]).

fp32: `litert_torch.convert(surface, (example,))`.
int8: torchao's pt2e `prepare_pt2e` / `convert_pt2e(fold_quantize=False)` with litert-torch's `PT2EQuantizer`
(symmetric int8 weights per output channel, int8 activations from the calibration images), then
`litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))`, which emits TFLite's integer ops.

Needs `pip install litert-torch` (0.10.0 tested beside torch 2.14.1; it brings ai-edge-litert, the interpreter):
docs/mobile-runtimes.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.export.executorch import export_surface


def export_tflite(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    int8: bool = False,
    calibration: Sequence[Tensor] = (),
    surface: nn.Module | None = None,
) -> bytes:
    """The `.tflite` flatbuffer of `model`'s raw surface at `input_size` (h, w).

    Args:
        int8: quantize (pt2e, litert-torch's PT2EQuantizer, per-channel weights) calibrated on `calibration`.
        calibration: float [1, 3, h, w] images, RGB 0..255 (required with `int8`).
        surface: the module to export instead of the task's raw surface (`export --nms`: `StaticNmsDetector`).
    """
    import litert_torch

    if int8 and not calibration:
        raise ValueError("int8 export needs calibration images")
    surface = export_surface(_litert_friendly(model)) if surface is None else surface.eval()
    example = torch.zeros(1, 3, *input_size)
    with torch.no_grad():
        # One eager call fills the detector's anchor cache: the anchors become a constant of the program instead
        # of float64 arithmetic in it (which litert-torch 0.10.0 cannot legalize: `tfl.broadcast_to` on f64).
        surface(example)
        if not int8:
            return litert_torch.convert(surface, (example,)).model_content()
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        graph = torch.export.export(surface, (example,)).module()
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        for image in calibration:
            prepared(image)
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return edge.model_content()


class _PoolingByMul(nn.Module):
    """The DeepLabv3 image-pooling branch with its broadcast back to [B, C, H, W] written as a multiplication by
    ones: litert-torch 0.10.0 converts `expand` on the 1x1 map to a BROADCAST_TO whose shape the interpreter then
    rejects ("Output shape must be broadcastable from input shape", node BROADCAST_TO), an NCHW/NHWC mix-up."""

    def __init__(self, pooling: nn.Module) -> None:
        super().__init__()
        self.conv = pooling.conv

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(x.mean(dim=(2, 3), keepdim=True))  # [B, C, 1, 1]
        return pooled * torch.ones_like(x[:, :1])  # [B, C, H, W], exact


def _litert_friendly(model: nn.Module) -> nn.Module:
    """A copy of `model` with the modules litert-torch mis-converts replaced by equivalents (same weights)."""
    import copy

    from mobilevision.models.heads.deeplabv3 import ImagePooling

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ImagePooling):
                setattr(parent, name, _PoolingByMul(child))
    return model


class TfliteRunner:
    """Runs a `.tflite` flatbuffer on the LiteRT interpreter (`ai_edge_litert`, its default XNNPACK delegate) at
    `num_threads`; `__call__(images float [1, 3, H, W]) -> list of output tensors` in the exported order."""

    def __init__(self, model: bytes, *, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=model, num_threads=int(num_threads))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        # Output order: litert-torch names them by position in the module's output tuple; the details list is not
        # guaranteed in that order, so sort by name (output_0, output_1, ...).
        details = self.interpreter.get_output_details()
        ordered = sorted(details, key=lambda d: _output_position(d["name"]))
        self.outputs = [d["index"] for d in ordered]
        # An int8 file's outputs can come out quantized (int8 values with a scale and zero point): dequantized here,
        # as the float outputs the rest of mobilevision reads (raw int8 values made the int8 detector's mAP 0).
        # Integer outputs that are plain integers (an NMS graph's labels and count) have scale 0: kept as they are.
        self.scales = [
            d["quantization"] if np.issubdtype(d["dtype"], np.integer) and d["quantization"][0] != 0 else None
            for d in ordered
        ]

    def __call__(self, images: Tensor) -> list[Tensor]:
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(images.float().numpy()))
        self.interpreter.invoke()
        outputs = []
        for index, quantization in zip(self.outputs, self.scales):
            value = self.interpreter.get_tensor(index)
            if quantization is not None:
                scale, zero_point = quantization
                value = (value.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
            outputs.append(torch.from_numpy(np.array(value, copy=True)))
        return outputs


def _output_position(name: str) -> tuple[int, str]:
    """Sort key of a LiteRT output tensor name: its trailing integer (e.g. `StatefulPartitionedCall:1`)."""
    tail = name.rsplit(":", 1)[-1].rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (0, name)
