from __future__ import annotations

import torch

from mobilevision import build_model
from mobilevision.tasks.segmentation.inference import multi_scale_flip_logits


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
        logits = multi_scale_flip_logits(model, images)
        flipped = multi_scale_flip_logits(model, images.flip(-1))
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
        torch.testing.assert_close(multi_scale_flip_logits(model, images, scales=(1.0,), flip=False), model(images))
