from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilevision.models.heads.ssd import SSDHead


def test_output_shapes_follow_maps_and_anchors() -> None:
    head = SSDHead(in_channels=[24, 40], num_anchors=[3, 6, 6, 6, 6, 6], num_classes=5).eval()
    feats = [torch.randn(2, 24, 20, 20), torch.randn(2, 40, 10, 10)]
    maps = head.feature_maps(feats)
    assert [tuple(m.shape[-2:]) for m in maps] == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert [m.shape[1] for m in maps] == [24, 40, 512, 256, 256, 128]
    out = head(feats)
    a = 20 * 20 * 3 + (100 + 25 + 9 + 4 + 1) * 6
    assert out["cls_logits"].shape == (2, a, 5)
    assert out["bbox_regression"].shape == (2, a, 4)


def test_lite_uses_depthwise_and_ssd_uses_regular_convs() -> None:
    lite = SSDHead(in_channels=[16, 32], num_anchors=[3] + [6] * 5, num_classes=3)
    ssd = SSDHead(in_channels=[16, 32], num_anchors=[3] + [6] * 5, num_classes=3, separable=False)

    def kernels(m: nn.Module) -> set[tuple[int, bool]]:
        return {(c.kernel_size[0], c.groups > 1) for c in m.modules() if isinstance(c, nn.Conv2d)}

    assert (3, False) not in kernels(lite) and (3, True) in kernels(lite)
    assert (3, True) not in kernels(ssd) and (3, False) in kernels(ssd)
    assert sum(p.numel() for p in ssd.parameters()) > 3 * sum(p.numel() for p in lite.parameters())


def test_mismatched_anchor_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_anchors has 2 entries"):
        SSDHead(in_channels=[16, 32], num_anchors=[3, 6], num_classes=3)


def test_set_class_bias_fills_every_anchor_and_checks_length() -> None:
    head = SSDHead(in_channels=[16, 32], num_anchors=[3, 6, 6], num_classes=4, extra_depths=[16])
    head.set_class_bias([2.0, 0.0, -1.0, 0.5])
    for predictor, anchors in zip(head.cls_heads, [3, 6, 6]):
        assert torch.equal(predictor[-1].bias, torch.tensor([2.0, 0.0, -1.0, 0.5]).repeat(anchors))
    with pytest.raises(ValueError, match="4 values"):
        head.set_class_bias([0.0, 1.0])
