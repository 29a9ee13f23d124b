"""The Backbone contract, checked for every backbone of the table (as timm checks `feature_info`): the declared taps,
roles, channels and strides are what `forward` returns, `set_output_stride` round-trips, torchvision's weights load
strictly (from a state_dict saved by torchvision's own constructor: no download)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from mobilevision.errors import WeightsError
from mobilevision.models.backbones import BACKBONES, backbone_class

NAMES = list(BACKBONES)
# The torchvision constructor whose state_dict each backbone's classifier form must equal.
TORCHVISION = {
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
}
REQUIRED_ROLES = {"stride8_expansion", "stride16_expansion", "second_last", "last"}
REQUIRED_HEADS = {"ssdlite", "deeplabv3", "multitask"}


def _tap_sets(name: str) -> list[tuple[str, ...]]:
    cls = backbone_class(name)
    return [(role,) for role in cls.ROLES] + [cls.DEFAULT_TAPS[head] for head in sorted(cls.DEFAULT_TAPS)]


def test_table_covers_torchvision_twins() -> None:
    assert set(NAMES) == set(TORCHVISION)


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name: str) -> None:
    cls = backbone_class(name)
    assert REQUIRED_ROLES <= set(cls.ROLES)
    assert REQUIRED_HEADS <= set(cls.DEFAULT_TAPS)
    assert all(tap in cls.TAP_NAMES for tap in cls.ROLES.values())
    assert all(role in cls.ROLES for taps in cls.DEFAULT_TAPS.values() for role in taps)
    assert len(set(cls.TAP_NAMES)) == len(cls.TAP_NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_forward_matches_declared(name: str, output_stride: int) -> None:
    cls = backbone_class(name)
    for taps in _tap_sets(name):
        net = cls(num_classes=None, width_mult=0.5, output_stride=output_stride, out_taps=taps).eval()
        assert net.out_taps == cls.resolve_taps(taps)
        assert set(net.out_channels) == set(net.strides) == set(net.out_taps)
        # Taps fine to coarse: strides never decrease along out_taps.
        assert [net.strides[t] for t in net.out_taps] == sorted(net.strides[t] for t in net.out_taps)
        assert all(s <= output_stride for s in net.strides.values())
        for size in (64, 97):
            with torch.no_grad():
                out = net(torch.randn(1, 3, size, size))
            assert list(out) == list(net.out_taps)
            for tap, tensor in out.items():
                side = math.ceil(size / net.strides[tap])
                assert tuple(tensor.shape) == (1, net.out_channels[tap], side, side), (name, tap, size)


@pytest.mark.parametrize("name", NAMES)
def test_taps_by_role_or_layer_name(name: str) -> None:
    cls = backbone_class(name)
    by_role = cls(num_classes=None, width_mult=0.5, out_taps=("stride16_expansion", "last"))
    by_name = cls(num_classes=None, width_mult=0.5, out_taps=(cls.ROLES["last"], cls.ROLES["stride16_expansion"]))
    assert by_role.out_taps == by_name.out_taps
    assert by_role.out_channels == by_name.out_channels
    with pytest.raises(ValueError, match="unknown taps \\['nope'\\]"):
        cls(num_classes=None, out_taps=("nope",))


@pytest.mark.parametrize("name", NAMES)
def test_set_output_stride_round_trips(name: str) -> None:
    cls = backbone_class(name)
    taps = tuple(cls.ROLES)
    x = torch.randn(1, 3, 96, 96)
    net = cls(num_classes=None, width_mult=0.5, output_stride=32, out_taps=taps).eval()
    with torch.no_grad():
        before = net(x)
        for output_stride in (8, 16):
            net.set_output_stride(output_stride)
            fresh = cls(num_classes=None, width_mult=0.5, output_stride=output_stride, out_taps=taps)
            assert net.strides == fresh.strides
            fresh.load_state_dict(net.state_dict())
            torch.testing.assert_close(net(x), fresh.eval()(x))
        net.set_output_stride(32)
        torch.testing.assert_close(net(x), before)


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_state_dict_loads_strict(name: str, tmp_path) -> None:
    reference = TORCHVISION[name]().eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    cls = backbone_class(name)
    classifier = cls(weights=path).eval()
    classifier.load_state_dict(reference.state_dict(), strict=True)  # same keys and shapes, nothing left over
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference(x))
        features = cls(num_classes=None, out_taps=("last",), weights=path).eval()
        torch.testing.assert_close(features(x)[cls.ROLES["last"]], reference.features(x))
    with pytest.raises(WeightsError, match="do not fit"):
        cls(width_mult=0.5, weights=path)
