"""The same detector in torchvision's SSD pipeline (the benchmarks' reference), and the images the benchmarks use:
photo-like generated scenes, a busy one, and BatchNorm calibration on them."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

IMAGE_SHAPE = (480, 640)
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


def photo_like_images(
    count: int,
    size: tuple[int, int],
    *,
    seed: int = 0,
    objects: tuple[int, int] = (1, 9),
    max_object: float | None = None,
) -> list[np.ndarray]:
    """`count` RGB uint8 (H, W, 3) images from the shapes generator: textured noisy backgrounds with clutter and
    `objects` (low, high exclusive) filled shapes each, as photo-like as a generator without data gets."""
    from mobilevision.data.shapes_render import render_image

    rng = np.random.default_rng(seed)
    h, w = size
    return [
        render_image(
            h,
            w,
            rng,
            num_objects=int(rng.integers(*objects)),
            min_object_size=12.0,
            max_object_size=max_object or 0.6 * min(h, w),
        )[0]
        for _ in range(count)
    ]


def busy_image(size: tuple[int, int] = IMAGE_SHAPE, *, seed: int = 1) -> np.ndarray:
    """RGB uint8 (H, W, 3): 40 shapes of 16 px to 40% of the short side on clutter, a crowded street's worth."""
    return photo_like_images(1, size, seed=seed, objects=(40, 41), max_object=0.4 * min(size))[0]


def calibrate_batchnorm(model: nn.Module, images: Sequence[np.ndarray], *, batch_size: int = 8) -> nn.Module:
    """Set every BatchNorm's running statistics to the plain average over `images` (RGB uint8 (H, W, 3) at the
    network's input size): train mode with `momentum=None` (cumulative average), no gradient, then eval mode.

    Fresh statistics (mean 0, variance 1) leave an untrained network's activations vanishing with depth, so every
    box scores about 1/num_classes; calibrated, the network's outputs vary across the image as a trained one's do.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    # Every branch's BatchNorms see the images: the joint model's segmentation head too (`forward_all`).
    forward = getattr(model, "forward_all", None) or getattr(model, "forward_raw", model)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            forward(torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2).float())
    for m in norms:
        m.momentum = 0.1
    return model.eval()


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


class _TorchvisionPipeline:
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
