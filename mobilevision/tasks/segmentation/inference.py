"""The paper's segmentation inference strategies (Table 7): evaluation output stride and MF.

MF is multi-scale inputs (0.5 to 1.75 in steps of 0.25 by default) with left-right flips; the class probabilities
(softmax of each pass's logits, upsampled to the input resolution) are averaged, as in the TF DeepLab reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.tasks.segmentation.postprocess import upsampled_argmax


def _argmax_planes(logits: Tensor) -> Tensor:
    """`logits.argmax(0).to(uint8)` for planar [C, H, W] logits (C <= 256), as a running maximum over the class
    planes: torch's argmax over a strided dimension reads memory C elements apart and took 81 ms for 21x512x512 at
    one thread where this takes 18 ms (means of 10 calls, 2026-11-29, the loaded dev VM). Ties keep the first class,
    as argmax does."""
    best = logits[0].clone()
    mask = torch.zeros(logits.shape[1:], dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[0]):
        better = logits[c] > best
        torch.maximum(best, logits[c], out=best)
        mask.masked_fill_(better, c)
    return mask


def segmentation_mask(logits: Tensor, image_size: tuple[int, int], *, canvas: tuple[int, int] | None = None) -> Tensor:
    """logits [C, h, w] -> class indices [H, W] at `image_size`, uint8 when C <= 256 else int64.

    The mask of the logits upsampled (bilinear, half-pixel centres) straight to `image_size` when they cover the
    image, or to `canvas` (the padded network input the logits cover, the image at its top-left) and cropped, then
    the argmax: smoother borders than resizing the argmax. Computed by `upsampled_argmax`, which upsamples only the
    pixels near class borders (the others take their cell's label): the same mask as the full upsampling up to
    float-rounding ties, at a fraction of its cost. Logits already at the size: the argmax alone.
    """
    target = tuple(image_size) if canvas is None else tuple(canvas)
    if tuple(logits.shape[-2:]) != target:
        return upsampled_argmax(logits, target, crop=None if canvas is None else tuple(image_size))
    if canvas is not None:
        logits = logits[:, : image_size[0], : image_size[1]]
    if logits.shape[0] > 256 or logits.stride(0) == 1:  # channels-last: the classes of a pixel are contiguous
        mask = logits.argmax(0)
        return mask.to(torch.uint8) if logits.shape[0] <= 256 else mask
    return _argmax_planes(logits)


MF_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def multi_scale_flip_probs(
    model: Callable[[Tensor], Tensor], images: Tensor, *, scales: Sequence[float] = MF_SCALES, flip: bool = True
) -> Tensor:
    """Class probabilities averaged over input scales (and their left-right flips), at the input size.

    Args:
        model: images [B, 3, h, w] -> logits [B, C, h', w'] (a `Segmenter`, or an onnxruntime session wrapped in a
            function: any input size must be accepted).
        images: [B, 3, H, W] RGB, uint8 or float 0..255.
    Returns:
        probabilities [B, C, H, W] (float32; each pixel's sum over C is 1).
    """
    if not scales:
        raise ValueError("scales must not be empty")
    height, width = images.shape[-2:]
    images = images.float()
    total: Tensor | None = None
    count = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = (
            images
            if size == (height, width)
            else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        )
        variants = [scaled, scaled.flip(-1)] if flip else [scaled]
        for index, variant in enumerate(variants):
            logits = model(variant).float()
            if index == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
            count += 1
    assert total is not None
    return total / count


# ----------------------------------------------------------------------------------------------------------------
# The task table's hooks: the exported surface and the `Predictor` adapter.


class _Logits(nn.Module):
    """Segmenter -> (logits,): the exported surface, a tuple like every task's. The logits stay at the output
    stride ([B, C, ceil(H/s), ceil(W/s)]): the one upsampling to the image is the post-processing's
    (`segmentation_mask`), not a pass to the input size the image would be resized from again. A TF-exact model
    (`convert tf`) upsamples with aligned corners, which that pass does not: it keeps its own upsampling to the
    input."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, images: Tensor) -> tuple[Tensor]:
        s = self.segmenter
        return (s(images) if s.align_corners else s.head_logits(images),)  # type: ignore[operator]


def export_module(model: nn.Module) -> nn.Module:
    return _Logits(model)


def save_mask(out: Any, name: str, mask: np.ndarray) -> str:
    """`mask` as a palette PNG `<out>/masks/<name>.png` (what `mobilevision evaluate segmentation` reads); its path."""
    from pathlib import Path

    from mobilevision.tasks.segmentation.masks import write_palette_png

    if mask.max(initial=0) > 255:
        raise ValueError("palette PNGs hold at most 256 classes")
    path = Path(out) / "masks" / f"{name}.png"
    write_palette_png(path, mask)
    return str(path)


class SegmentationInference:
    """The `Predictor` adapter: whole images, as the evaluation protocol runs them.

    By default an image is padded (bottom/right, ImageNet mean) with the very transform validation uses
    (`eval_transforms("pad")`: to at least the training size, then to a multiple of the checkpoint's
    `pad_multiple`), run at the evaluation output stride and with MF when the checkpoint was evaluated so, and its
    mask cropped back; never squashed. An explicit `input_size` resizes instead (a fixed cost, not what validation
    measures), the scores then upsampled to the image.

    Options: `input_size`, `output_stride` (torch models only), `multi_scale_flip`, `mf_scales`.
    """

    def __init__(self, model: nn.Module | None, meta: Any, options: dict[str, Any]) -> None:
        inference = dict(meta.inference or {})
        self.resize_to: tuple[int, int] | None = tuple(options["input_size"]) if options.get("input_size") else None
        self.min_size: tuple[int, int] = tuple(meta.input_size)  # type: ignore[assignment]
        self.pad_multiple = int(inference.get("pad_multiple") or meta.model_kwargs.get("output_stride") or 16)
        self.multi_scale_flip = bool(
            options["multi_scale_flip"]
            if options.get("multi_scale_flip") is not None
            else inference.get("multi_scale_flip", False)
        )
        self.scales = tuple(float(s) for s in (options.get("mf_scales") or inference.get("mf_scales") or MF_SCALES))
        stride = options.get("output_stride") or inference.get("output_stride")
        if stride and model is None and options.get("output_stride"):
            raise ValueError(
                "output_stride applies to the torch backend: an ONNX graph keeps the output stride it was exported with"
            )
        if stride and model is not None and int(stride) != model.output_stride:  # type: ignore[union-attr]
            model.set_output_stride(int(stride))  # type: ignore[operator]
        # The very transform validation uses: padding can never drift from what the scores were measured on.
        from mobilevision.tasks.segmentation.data import eval_transforms

        self._pad = eval_transforms("pad", size=self.min_size, multiple=self.pad_multiple)
        self.class_names = list(meta.class_names)

    # What `mobilevision predict` writes (`mobilevision.inference.sinks.predict_source`): overlays, palette masks.
    drawn_folder = "overlays"
    video_suffix = "overlay"
    writes_results = False

    def classes(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        from mobilevision.inference.draw import overlay_mask, overlay_with_legend

        # A legend strip below still images; video frames keep their size.
        return (
            overlay_with_legend(image, result["mask"], self.class_names)
            if still
            else overlay_mask(image, result["mask"])
        )

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        return []

    def save(self, out: Any, name: str, result: dict[str, Any]) -> str | None:
        return save_mask(out, name, result["mask"])

    def prepare(self, image: np.ndarray) -> np.ndarray:
        if self.resize_to is not None:
            h, w = self.resize_to
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return self._pad(image=image)["image"]

    def run(self, network: Any, batch: Tensor) -> list[Tensor]:
        self._canvas = tuple(batch.shape[-2:])
        if self.multi_scale_flip:
            return [multi_scale_flip_probs(lambda x: _full(network(x)[0], x), batch, scales=self.scales)]
        return [network(batch)[0]]

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        # Padded input: the image is the top-left corner of its canvas (upsample to the canvas, crop).
        canvas = None if self.resize_to is not None else getattr(self, "_canvas", None)
        return {"mask": segmentation_mask(outputs[0][index], image_size, canvas=canvas).cpu().numpy()}


def _full(logits: Tensor, images: Tensor) -> Tensor:
    """Logits at the output stride -> at the input size (multi-scale averaging adds probabilities pixel by pixel)."""
    if tuple(logits.shape[-2:]) == tuple(images.shape[-2:]):
        return logits
    return F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
