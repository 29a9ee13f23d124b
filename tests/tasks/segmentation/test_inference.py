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


def test_one_upsampling_to_the_canvas_equals_the_two_pass_mask() -> None:
    """Padded input: logits at the stride upsampled once to the canvas and cropped give the mask the old two
    passes (to the input, crop) gave, channels-last or not."""
    from torch.nn import functional as F

    from mobilevision.tasks.segmentation.inference import segmentation_mask

    logits = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(0))
    canvas, image = (96, 128), (90, 120)
    full = F.interpolate(logits[None], size=canvas, mode="bilinear", align_corners=False)[0]
    old = full[:, : image[0], : image[1]].argmax(0).to(torch.uint8)
    assert torch.equal(segmentation_mask(logits, image, canvas=canvas), old)
    # Resized input: one pass straight to the image size, channels-last, equals the planar argmax of the same map.
    direct = F.interpolate(logits[None], size=(70, 50), mode="bilinear", align_corners=False)[0]
    assert torch.equal(segmentation_mask(logits, (70, 50)), direct.argmax(0).to(torch.uint8))


def test_exported_surface_keeps_the_logits_at_the_output_stride() -> None:
    from mobilevision.tasks.segmentation.inference import export_module

    model = build_model("deeplabv3_mobilenet_v2", num_classes=3, width_mult=0.35).eval()
    with torch.no_grad():
        (low,) = export_module(model)(torch.zeros(1, 3, 64, 96))
    assert low.shape == (1, 3, 4, 6)
