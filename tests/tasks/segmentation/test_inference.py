from __future__ import annotations

import torch

from mobilevision import build_model
from mobilevision.tasks.segmentation.inference import multi_scale_flip_probs


def _calibrated(num_classes: int):
    # Fresh BatchNorm statistics (mean 0, var 1) leave a random network's logits spatially constant; a few training
    # mode passes give it real statistics, so the symmetry checks below can fail.
    torch.manual_seed(0)
    model = build_model("deeplabv3_mobilenet_v2", num_classes=num_classes, width_mult=0.35).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8))
    return model.eval()


def test_mf_is_flip_consistent_and_sized() -> None:
    model = _calibrated(4)
    images = torch.randint(0, 256, (1, 3, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        logits = multi_scale_flip_probs(model, images)
        flipped = multi_scale_flip_probs(model, images.flip(-1))
    assert logits.shape == (1, 4, 64, 80)
    # Both flips are averaged, so flipping the input flips the output.
    torch.testing.assert_close(flipped, logits.flip(-1), atol=1e-4, rtol=1e-4)
    # ... which a single pass is not (random weights are not symmetric).
    with torch.no_grad():
        single = model(images.float())
    assert not torch.allclose(model(images.flip(-1).float()).flip(-1), single, atol=1e-3)


def test_single_scale_without_flip_is_the_plain_forward() -> None:
    model = _calibrated(3)
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(
            multi_scale_flip_probs(model, images, scales=(1.0,), flip=False), model(images).softmax(1)
        )


def test_mf_averages_probabilities_not_logits() -> None:
    """The TF DeepLab reference averages softmax probabilities over scales and flips; computed here by hand."""
    from torch.nn import functional as F

    model = _calibrated(5)
    images = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)
    scales = (0.5, 1.0, 1.5)
    with torch.no_grad():
        expected = torch.zeros(2, 5, 40, 56)
        for scale in scales:
            size = (round(40 * scale), round(56 * scale))
            scaled = (
                images.float()
                if scale == 1.0
                else F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
            )
            for flip in (False, True):
                logits = model(scaled.flip(-1) if flip else scaled)
                logits = logits.flip(-1) if flip else logits
                logits = F.interpolate(logits, size=(40, 56), mode="bilinear", align_corners=False)
                expected += logits.softmax(1) / (2 * len(scales))
        got = multi_scale_flip_probs(model, images, scales=scales)
        logit_mean = sum(  # what the code did before: the mean of the logits
            F.interpolate(
                model(
                    F.interpolate(
                        images.float(), size=(round(40 * s), round(56 * s)), mode="bilinear", align_corners=False
                    )
                ),
                size=(40, 56),
                mode="bilinear",
                align_corners=False,
            )
            for s in scales
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.sum(1), torch.ones(2, 40, 56), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, logit_mean.softmax(1), atol=1e-4)
