"""Small models for the inference and export tests (width 0.35, a few classes, detections forced by a class bias)."""

from __future__ import annotations

import numpy as np
import torch

from mobilevision.checkpoint import ModelMeta
from mobilevision.models import build_model


def small_detector(num_classes: int = 4, *, force: bool = True, seed: int = 0) -> torch.nn.Module:
    """An untrained SSDLite (width 0.35). With `force`, classes 1 and 2 get a large logit bias so that many boxes
    pass a 0.3 threshold and NMS has work to do (an untrained model scores ~1/num_classes everywhere)."""
    torch.manual_seed(seed)
    model = build_model("ssdlite_mobilenet_v2", num_classes=num_classes, width_mult=0.35).eval()
    if force:
        with torch.no_grad():
            for head in model.head.cls_heads:
                bias = head[-1].bias.view(-1, num_classes)
                bias[:, 1] += 4.0
                bias[:, 2] += 3.0
    return model


def small_segmenter(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=0.35).eval()


def detector_meta(num_classes: int = 4, input_size: tuple[int, int] = (160, 160)) -> ModelMeta:
    names = ["background"] + [f"thing{i}" for i in range(1, num_classes)]
    return ModelMeta(task="detection", model_name="ssdlite_mobilenet_v2",
                     model_kwargs={"num_classes": num_classes, "width_mult": 0.35}, class_names=names,
                     category_ids=[0] + [10 * i for i in range(1, num_classes)], input_size=input_size)


def segmenter_meta(num_classes: int = 3, input_size: tuple[int, int] = (128, 128)) -> ModelMeta:
    names = ["background"] + [f"region{i}" for i in range(1, num_classes)]
    return ModelMeta(task="segmentation", model_name="deeplabv3_mobilenet_v2",
                     model_kwargs={"num_classes": num_classes, "width_mult": 0.35}, class_names=names,
                     input_size=input_size)


def random_image(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
