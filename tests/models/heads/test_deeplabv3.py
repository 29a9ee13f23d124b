from __future__ import annotations

import torch
from torch import nn

from mobilevision.models.heads.deeplabv3 import DeepLabV3Head


def test_reduced_head_has_two_branches_and_aspp_adds_atrous_ones() -> None:
    reduced = DeepLabV3Head(in_channels=320, num_classes=21)
    aspp = DeepLabV3Head(in_channels=320, num_classes=21, atrous_rates=(6, 12, 18))
    assert len(reduced.branches) == 2 and len(aspp.branches) == 5
    dilations = sorted(c.dilation[0] for c in aspp.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3))
    assert dilations == [6, 12, 18]
    x = torch.randn(2, 320, 9, 11)
    assert reduced.eval()(x).shape == (2, 21, 9, 11)
    assert aspp.eval()(x).shape == (2, 21, 9, 11)


def test_image_pooling_branch_sees_the_whole_map() -> None:
    head = DeepLabV3Head(in_channels=8, num_classes=3).eval()
    x = torch.zeros(1, 8, 6, 6)
    y = x.clone()
    y[..., 5, 5] = 10.0  # a change far from (0, 0) reaches it only through image pooling
    with torch.no_grad():
        assert not torch.allclose(head(x)[..., 0, 0], head(y)[..., 0, 0])


def test_set_atrous_rates_matches_a_head_built_with_them() -> None:
    torch.manual_seed(0)
    head = DeepLabV3Head(in_channels=16, num_classes=3, atrous_rates=(6, 12, 18)).eval()
    other = DeepLabV3Head(in_channels=16, num_classes=3, atrous_rates=(12, 24, 36)).eval()
    other.load_state_dict(head.state_dict())
    head.set_atrous_rates((12, 24, 36))
    x = torch.randn(1, 16, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(head(x), other(x))
