"""Small models for the inference and export tests (width 0.35, a few classes, detections forced by a class bias)."""

from __future__ import annotations

import numpy as np
import torch

from mobilevision.checkpoint import ModelMeta
from mobilevision.models import build_model


def calibrate_batchnorm(model: torch.nn.Module, size: tuple[int, int] = (128, 128), seed: int = 0) -> None:
    """Set every BatchNorm's running statistics from one batch of random images.

    Fresh BatchNorms (mean 0, var 1) with the init's small weights make activations vanish with depth in eval
    mode (1e-8 at the last maps), so an untrained model's scores differ only by rounding noise; after this the
    activations are normalised as in a trained network and outputs vary from place to place.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (8, 3, *size), generator=generator, dtype=torch.uint8)
    model.train()
    with torch.no_grad():
        if hasattr(model, "forward_all"):  # the joint model: both heads' BatchNorms
            model.forward_all(images)
        elif hasattr(model, "forward_raw"):
            model.forward_raw(images)
        else:
            model(images)
    for m in norms:
        m.momentum = 0.1
        # The deepest maps are 1x1: a few samples per channel give near-zero variances, whose division would
        # amplify rounding noise far beyond what a trained network shows.
        m.running_var.clamp_(min=0.1)
    model.eval()


def small_detector(num_classes: int = 4, *, force: bool = True, seed: int = 0) -> torch.nn.Module:
    """An untrained SSDLite (width 0.35) with zero class biases (no class prior), so its head scores ~1/num_classes
    everywhere, with differences of 1e-7 (ties). With `force`, BatchNorm is calibrated (scores spread out, no
    near-ties) and classes 1 and 2 get a bias, so that many boxes pass a 0.3 threshold and NMS has work to do."""
    torch.manual_seed(seed)
    model = build_model("ssdlite_mobilenet_v2", num_classes=num_classes, width_mult=0.35, class_prior=None).eval()
    if force:
        calibrate_batchnorm(model, seed=seed)
        with torch.no_grad():
            for head in model.head.cls_heads:
                bias = head[-1].bias.view(-1, num_classes)
                bias[:, 1] += 2.0
                bias[:, 2] += 1.0
    return model


def small_segmenter(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=0.35)
    calibrate_batchnorm(model, seed=seed)
    return model


def detector_meta(num_classes: int = 4, input_size: tuple[int, int] = (160, 160)) -> ModelMeta:
    names = ["background"] + [f"thing{i}" for i in range(1, num_classes)]
    return ModelMeta(
        task="detection",
        model_name="ssdlite_mobilenet_v2",
        model_kwargs={"num_classes": num_classes, "width_mult": 0.35},
        class_names=names,
        category_ids=[0] + [10 * i for i in range(1, num_classes)],
        input_size=input_size,
    )


def segmenter_meta(num_classes: int = 3, input_size: tuple[int, int] = (128, 128)) -> ModelMeta:
    names = ["background"] + [f"region{i}" for i in range(1, num_classes)]
    return ModelMeta(
        task="segmentation",
        model_name="deeplabv3_mobilenet_v2",
        model_kwargs={"num_classes": num_classes, "width_mult": 0.35},
        class_names=names,
        input_size=input_size,
    )


def random_image(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def small_multitask(num_classes: int = 4, seg_num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """An untrained joint model (width 0.35), calibrated and biased like `small_detector`, so both boxes and a mask
    with several classes come out."""
    torch.manual_seed(seed)
    model = build_model(
        "ssdlite_deeplabv3_mobilenet_v2",
        num_classes=num_classes,
        seg_num_classes=seg_num_classes,
        width_mult=0.35,
        class_prior=None,
    ).eval()
    calibrate_batchnorm(model, seed=seed)
    with torch.no_grad():
        for head in model.head.cls_heads:
            bias = head[-1].bias.view(-1, num_classes)
            bias[:, 1] += 2.0
            bias[:, 2] += 1.0
        # The mask varies from place to place instead of one class winning everywhere: logits spread out, each
        # class centred on its mean over a few images.
        model.seg_head.classifier.weight.mul_(20.0)
        images = torch.randint(0, 256, (4, 3, 96, 96), generator=torch.Generator().manual_seed(seed + 1))
        logits = model.forward_all(images.float())[3]
        model.seg_head.classifier.bias.sub_(logits.mean((0, 2, 3)))
    return model


def multitask_meta(
    num_classes: int = 4, seg_num_classes: int = 3, input_size: tuple[int, int] = (128, 128)
) -> ModelMeta:
    return ModelMeta(
        task="multitask",
        model_name="ssdlite_deeplabv3_mobilenet_v2",
        model_kwargs={"num_classes": num_classes, "seg_num_classes": seg_num_classes, "width_mult": 0.35},
        class_names=["background"] + [f"thing{i}" for i in range(1, num_classes)],
        category_ids=[0] + [10 * i for i in range(1, num_classes)],
        input_size=input_size,
        mask_class_names=["background"] + [f"region{i}" for i in range(1, seg_num_classes)],
    )
