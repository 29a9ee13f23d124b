"""The joint model at inference: the exported surface, the `Predictor` adapter and the export comparison (the task
table's hooks for "multitask").

One pass gives four raw outputs: the detector's (cls_logits [B, A, C], bbox_regression [B, A, 4], anchors [A, 4], a
constant of the input size) and the segmentation head's mask_logits [B, S, H, W] at the input size. Boxes are
post-processed as a detector's (`DetectionInference`, parameters from the model or the ONNX metadata); the mask is
the logits resized (bilinear) to the image's own size, then the argmax, as segmentation's `predict` writes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilevision.errors import InvalidValueError
from mobilevision.tasks.detection.inference import DetectionInference, coco_results
from mobilevision.tasks.segmentation.inference import save_mask, segmentation_mask

# Two runs' masks agree when every pixel whose class differs is borderline: the reference's two best logits there
# are within MASK_MARGIN of each other (relative to max(1, the logits' scale)), so float rounding may pick either.
MASK_MARGIN = 1e-4


class RawMultiTask(nn.Module):
    """MultiTaskModel -> (cls_logits, bbox_regression, anchors, mask_logits): the exported surface, one backbone pass,
    no decoding, NMS or argmax."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # The mask logits stay at the segmentation head's stride; the post-processing upsamples them once, to the
        # image (`segmentation_mask`).
        outputs, anchors, _, logits = self.model.forward_all(images, upsample=False)  # type: ignore[operator]
        return outputs["cls_logits"], outputs["bbox_regression"], anchors, logits


def export_module(model: nn.Module) -> nn.Module:
    return RawMultiTask(model)


class MultiTaskInference(DetectionInference):
    """The `Predictor` adapter: the detector's preprocessing (every image resized to the square input size with the
    evaluation resize's interpolation), its boxes in the image's pixels with dataset ids and names, plus `mask`: class
    indices [H, W] at the image's own size (uint8; int64 beyond 256 classes) in the segmentation head's label space
    (`ModelMeta.mask_class_names`).

    For `predict`: annotated images (the mask overlay with boxes drawn over it), COCO results, palette PNG masks
    (`masks/<name>.png`, what `mobilevision evaluate segmentation` reads) and both label spaces in classes.json.

    Options: those of `DetectionInference` (`score_threshold`, `input_size`, `metadata`). The segmentation options
    (`output_stride`, `multi_scale_flip`) are refused: the joint model's output stride is fixed at 16 and MF would
    rerun the detector with the segmenter.
    """

    def __init__(self, model: nn.Module | None, meta: Any, options: dict[str, Any]) -> None:
        if options.get("output_stride"):
            raise InvalidValueError(
                "output_stride: the joint model's output stride is fixed at 16 (its detector reads the same maps)"
            )
        if options.get("multi_scale_flip"):
            raise InvalidValueError("multi_scale_flip applies to segmentation models, not the joint model")
        super().__init__(model, meta, options)
        if meta.mask_class_names:
            self.mask_class_names = list(meta.mask_class_names)
        else:  # a bare model: its head's size
            from mobilevision.checkpoint import default_class_names

            count = int(model.seg_num_classes) if model is not None else 0  # type: ignore[union-attr]
            self.mask_class_names = default_class_names(count)

    drawn_folder = "annotated"
    video_suffix = "annotated"
    writes_results = True

    def classes(self) -> dict[str, Any]:
        return {**super().classes(), "mask_class_names": self.mask_class_names}

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        """The mask overlay (with a legend of its classes below still images), the boxes drawn over it."""
        from mobilevision.inference.draw import draw_detections, overlay_mask, overlay_with_legend

        canvas = (
            overlay_with_legend(image, result["mask"], self.mask_class_names)
            if still
            else overlay_mask(image, result["mask"])
        )
        return draw_detections(canvas, result)  # boxes lie in the image's rows, above the legend strip

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        return coco_results(result, image_id)

    def save(self, out: Any, name: str, result: dict[str, Any]) -> str | None:
        return save_mask(out, name, result["mask"])

    def run(self, network: Any, batch: Any) -> list[Tensor]:
        return list(network(batch))

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        detections = super().result(outputs, index, image_size)
        return {**detections, "mask": segmentation_mask(outputs[3][index], image_size).cpu().numpy()}


def compare_masks(
    reference: Tensor, other: Tensor, *, margin: float = MASK_MARGIN, input_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Pixel agreement of two runs' mask logits [N, S, h, w] (argmax at `input_size`: logits at the output stride
    are upsampled to it first, as the post-processing does, so the pixels counted are the ones users get).

    Returns:
        `pixels` compared, `agreeing` ones, `borderline` disagreements (the reference's two best logits within
        `margin` x max(1, max |logit|) of each other), `agreement` (fraction), and `identical` (every disagreement
        borderline).
    """
    reference, other = reference.float(), other.float()
    if input_size is not None and tuple(reference.shape[-2:]) != tuple(input_size):
        reference, other = (F.interpolate(t, size=tuple(input_size), mode="bilinear") for t in (reference, other))
    same = reference.argmax(1) == other.argmax(1)
    if reference.shape[1] > 1:
        top2 = reference.topk(2, dim=1).values
        close = (top2[:, 0] - top2[:, 1]) <= margin * max(1.0, float(reference.abs().max()))
    else:
        close = torch.ones_like(same)
    pixels, agreeing = same.numel(), int(same.sum())
    borderline = int((~same & close).sum())
    return {
        "threshold": "mask",
        "pixels": pixels,
        "agreeing": agreeing,
        "borderline": borderline,
        "agreement": agreeing / max(1, pixels),
        "identical": agreeing + borderline == pixels,
    }


def compare(
    source: Any,
    reference: list[Tensor],
    other: list[Tensor],
    *,
    input_size: tuple[int, int],
    thresholds: tuple[float, ...] = (),
    mask_margin: float = MASK_MARGIN,
    **options: Any,
) -> list[dict[str, Any]]:
    """The detector's comparison (`tasks.detection.parity.compare`, per threshold) of the first three outputs, then
    one row for the masks (`compare_masks`: `threshold` "mask", pixel counts, `agreement`, `identical`)."""
    from mobilevision.tasks.detection.parity import compare as compare_detections

    rows = compare_detections(source, reference[:3], other[:3], input_size=input_size, thresholds=thresholds, **options)
    return rows + [compare_masks(reference[3], other[3], margin=mask_margin, input_size=input_size)]
