"""The same detector in torchvision's SSD pipeline: the reference the detection benchmarks time ours against."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

INPUT_SIZE = (320, 320)
NUM_CLASSES = 81
SCORE_THRESHOLD = 0.3


class _TapsAndExtras(nn.Module):
    """Our backbone taps followed by the head's extra layers, as torchvision's SSD expects from its backbone."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.extra = detector.head.extra

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        taps = self.backbone(x)
        maps = [taps[t] for t in self.backbone.out_taps]
        for layer in self.extra:
            maps.append(layer(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


class _OurDefaultBoxes(nn.Module):
    """torchvision's anchor-generator interface over a Detector's own default boxes (for checkpoints whose boxes
    `DefaultBoxGenerator` cannot express)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Any, features: list[Tensor]) -> list[Tensor]:
        sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.detector.anchors(sizes, tuple(images.tensors.shape[-2:]), images.tensors.device)
        return [anchors for _ in range(images.tensors.shape[0])]


def build_pair(
    detector: nn.Module | None = None,
    *,
    num_classes: int = NUM_CLASSES,
    width_mult: float = 1.0,
    score_threshold: float = SCORE_THRESHOLD,
    input_size: tuple[int, int] = INPUT_SIZE,
) -> tuple[nn.Module, nn.Module]:
    """(our Detector, torchvision SSD) with identical weights, both in eval mode.

    Args:
        detector: a trained softmax Detector (None: a fresh SSDLite with zero class biases, like torchvision's head,
            and torchvision's default boxes).
        score_threshold: torchvision's `score_thresh` (ours is the Predictor's).
    """
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    from mobilevision.models import build_model
    from mobilevision.models.anchors import DefaultBoxes

    if detector is None:
        # class_prior=None: zero class biases like torchvision's head, so both score (and NMS) the same boxes.
        detector = build_model(
            "ssdlite_mobilenet_v2",
            num_classes=num_classes,
            width_mult=width_mult,
            default_boxes=DefaultBoxes(reduce_lowest=False),
            class_prior=None,
        )
    ours = detector.eval()
    if getattr(ours, "classification", "softmax") != "softmax":
        raise ValueError("torchvision's SSD scores with softmax; this detector was trained with sigmoid scores")
    num_classes = ours.num_classes
    twin = copy.deepcopy(ours)
    head = SSDLiteHead(
        list(ours.head.map_channels), list(ours.default_boxes.num_anchors), num_classes, norm_layer=nn.BatchNorm2d
    )
    theirs_sd = head.state_dict()
    ours_sd = {
        **{
            f"classification_head.module_list.{k[len('cls_heads.') :]}": v
            for k, v in twin.head.state_dict().items()
            if k.startswith("cls_heads.")
        },
        **{
            f"regression_head.module_list.{k[len('box_heads.') :]}": v
            for k, v in twin.head.state_dict().items()
            if k.startswith("box_heads.")
        },
    }
    # Same block structure (depthwise 3x3 + BN + ReLU6, then 1x1 with bias): keys map one to one.
    head.load_state_dict({k: ours_sd[k] for k in theirs_sd}, strict=True)
    anchors: nn.Module = DefaultBoxGenerator([[2, 3]] * len(ours.head.map_channels), min_ratio=0.2, max_ratio=0.95)
    ssd = SSD(
        _TapsAndExtras(twin),
        anchors,
        input_size,
        num_classes,
        head=head,
        image_mean=list(ours.normalize.mean),
        image_std=list(ours.normalize.std),
        score_thresh=score_threshold,
        nms_thresh=ours.nms_threshold,
        detections_per_img=ours.detections_per_image,
        topk_candidates=ours.topk_candidates,
    ).eval()
    with torch.no_grad():
        x = torch.rand(1, 3, *input_size) * 255
        raw, our_anchors = ours.forward_raw(x)
        images, _ = ssd.transform([x[0] / 255])
        features = list(ssd.backbone(images.tensors).values())
        tv = ssd.head(features)
        diff = (raw["cls_logits"] - tv["cls_logits"]).abs().max().item()
        tv_anchors = ssd.anchor_generator(images, features)[0]
    if diff > 1e-3 * max(1.0, raw["cls_logits"].abs().max().item()):
        raise RuntimeError(f"the torchvision twin does not reproduce our head outputs (max diff {diff})")
    if tv_anchors.shape != our_anchors.shape or (tv_anchors - our_anchors).abs().max() > 1e-2:
        ssd.anchor_generator = _OurDefaultBoxes(twin)  # a checkpoint's own default boxes
    return ours, ssd


class TorchvisionPipeline:
    """The user's path through torchvision: HWC uint8 -> float CHW in 0..1 -> SSD (transform, net, postprocess)."""

    def __init__(self, ssd: nn.Module) -> None:
        self.ssd = ssd

    def __call__(self, image: np.ndarray) -> dict[str, Tensor]:
        with torch.inference_mode():
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
            return self.ssd([tensor])[0]

    def timed(self, image: np.ndarray) -> tuple[dict[str, Tensor], dict[str, float]]:
        ssd = self.ssd
        with torch.inference_mode():
            t0 = time.perf_counter()
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
            images, _ = ssd.transform([tensor])
            t1 = time.perf_counter()
            features = list(ssd.backbone(images.tensors).values())
            head_outputs = ssd.head(features)
            t2 = time.perf_counter()
            anchors = ssd.anchor_generator(images, features)
            detections = ssd.postprocess_detections(head_outputs, anchors, images.image_sizes)
            detections = ssd.transform.postprocess(detections, images.image_sizes, [tuple(image.shape[:2])])
            t3 = time.perf_counter()
        return detections[0], {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}
