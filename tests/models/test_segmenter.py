from __future__ import annotations

import pytest
import torch

from mobilevision import build_model


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(97, 131), (128, 128), (65, 33)])
def test_logits_at_input_size_for_odd_sizes(output_stride: int, size: tuple[int, int]) -> None:
    model = build_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35, output_stride=output_stride).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8))
    assert out.shape == (2, 5, *size)
    assert model.output_stride == output_stride


def test_aspp_variant() -> None:
    model = build_model("deeplabv3_mobilenet_v2", num_classes=3, width_mult=0.35, atrous_rates=(6, 12, 18)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
