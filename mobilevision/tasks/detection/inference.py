"""Detection at inference: the exported surface and the `Predictor` adapter (the task table's hooks).

The network's raw outputs are (cls_logits [B, A, C], bbox_regression [B, A, 4], anchors [A, 4]); decoding, the
score threshold and NMS are `DetectionPostprocess`, applied after either backend, with the parameters the detector
was built with (stored in the ONNX file's metadata).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import cv2
import numpy as np
from torch import Tensor, nn

from mobilevision.models.postprocess import DetectionPostprocess

POSTPROCESS_KEY = "mobilevision.postprocess"


class RawDetector(nn.Module):
    """Detector -> (cls_logits, bbox_regression, anchors): the exported surface, no decoding or NMS."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs, anchors = self.detector.forward_raw(images)
        return outputs["cls_logits"], outputs["bbox_regression"], anchors


def export_module(model: nn.Module) -> nn.Module:
    return RawDetector(model)


def postprocess_for(model: nn.Module, *, score_threshold: float = 0.3) -> DetectionPostprocess:
    """The post-processing a detector (or the joint model) was built with (NMS IoU, top-k, cap, box coder), at the
    serving score threshold."""
    return replace(model.postprocessor, score_threshold=score_threshold)


def export_metadata(model: nn.Module) -> dict[str, Any]:
    return {POSTPROCESS_KEY: asdict(postprocess_for(model))}


def postprocess_from_metadata(metadata: dict[str, Any]) -> DetectionPostprocess | None:
    """The `DetectionPostprocess` stored by `export_metadata` (None when absent)."""
    values = metadata.get(POSTPROCESS_KEY)
    if values is None:
        return None
    values = dict(values)
    values["box_coder_weights"] = tuple(values["box_coder_weights"])
    return DetectionPostprocess(**values)


def eval_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 (H, W, 3) to `size` (h, w) as the detection evaluation transform does (albumentations'
    `Resize(area_for_downscale="image")`): area interpolation when either side shrinks, bilinear otherwise."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrinking = h < image.shape[0] or w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def coco_results(result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
    """Predictor detections -> COCO results entries ({image_id, category_id, bbox [x, y, w, h], score}), rounded as
    `to_coco_results` rounds validation's (0.01 px, 1e-5)."""
    out = []
    for box, score, category in zip(result["boxes"], result["scores"], result["category_ids"]):
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(category),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
            }
        )
    return out


class DetectionInference:
    """The `Predictor` adapter: every image resized to the input size (as evaluation does), boxes back in the
    image's pixels, labels mapped to the dataset's category ids and names; for `predict`, annotated images and a
    COCO results file.

    Options: `score_threshold` (default 0.3), `input_size` ((h, w); default the checkpoint's), `metadata` (an ONNX
    file's metadata, holding the post-processing parameters when there is no torch model).
    """

    def __init__(self, model: nn.Module | None, meta: Any, options: dict[str, Any]) -> None:
        post = postprocess_from_metadata(options.get("metadata") or {}) if model is None else postprocess_for(model)
        if post is None:
            raise ValueError(
                "an exported detector needs its post-processing parameters (metadata "
                f"{POSTPROCESS_KEY!r}); re-export it with `mobilevision export`"
            )
        threshold = float(options.get("score_threshold", 0.3))
        self.postprocess = DetectionPostprocess(**{**post.__dict__, "score_threshold": threshold})
        self.input_size: tuple[int, int] = tuple(options.get("input_size") or meta.input_size)
        self.class_names = list(meta.class_names)
        ids = meta.category_ids if meta.category_ids is not None else range(len(self.class_names))
        self.category_ids = np.asarray(list(ids), dtype=np.int64)

    # What `mobilevision predict` writes (`mobilevision.inference.sinks.predict_source`).
    drawn_folder = "annotated"
    video_suffix = "annotated"
    writes_results = True

    def classes(self) -> dict[str, Any]:
        return {"class_names": self.class_names, "category_ids": [int(i) for i in self.category_ids]}

    def draw(self, image: np.ndarray, result: dict[str, Any], *, still: bool = True) -> np.ndarray:
        from mobilevision.inference.draw import draw_detections

        return draw_detections(image, result)

    def results(self, result: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        return coco_results(result, image_id)

    def save(self, out: Any, name: str, result: dict[str, Any]) -> str | None:
        return None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return eval_resize(image, self.input_size)

    def run(self, network: Any, batch: Any) -> list[Tensor]:
        return network(batch)

    def result(self, outputs: list[Tensor], index: int, image_size: tuple[int, int]) -> dict[str, Any]:
        det = self.postprocess(
            outputs[0][index], outputs[1][index], outputs[2], input_size=self.input_size, image_size=image_size
        )
        labels = det["labels"].cpu().numpy()
        return {
            "boxes": det["boxes"].cpu().numpy().astype(np.float32, copy=False),
            "scores": det["scores"].cpu().numpy().astype(np.float32, copy=False),
            "labels": labels,
            "category_ids": self.category_ids[labels] if len(self.category_ids) else labels,
            "names": [
                self.class_names[int(i)] if 0 <= int(i) < len(self.class_names) else f"class_{int(i)}" for i in labels
            ],
        }
