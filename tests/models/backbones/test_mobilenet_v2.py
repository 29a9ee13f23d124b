from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision

from mobilevision import build_model
from mobilevision.errors import WeightsError
from mobilevision.models.backbones.mobilenet_v2 import TAP_NAMES, InvertedResidual, MobileNetV2


def _expected(size: int, stride: int) -> int:
    # Each stride-2 3x3 conv with padding 1 maps n to ceil(n / 2).
    for _ in range(int(math.log2(stride))):
        size = math.ceil(size / 2)
    return size


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("width_mult", [0.35, 0.5, 1.0, 1.4])
def test_declared_channels_and_strides_match_real_maps(output_stride: int, width_mult: float) -> None:
    net = MobileNetV2(num_classes=None, width_mult=width_mult, output_stride=output_stride, out_taps=TAP_NAMES).eval()
    for size in (64, 97, 321):
        with torch.no_grad():
            taps = net(torch.zeros(1, 3, size, size))
        assert list(taps) == list(TAP_NAMES)
        for name, tensor in taps.items():
            assert tensor.shape[1] == net.out_channels[name], name
            assert net.strides[name] <= output_stride
            assert tensor.shape[2] == _expected(size, net.strides[name]), (name, size)
            assert tensor.shape[3] == _expected(size, net.strides[name]), (name, size)


def test_paper_channels_and_strides_at_width_one() -> None:
    net = MobileNetV2(num_classes=None, out_taps=("layer_15/expansion", "layer_18", "layer_19"))
    assert net.out_channels == {"layer_15/expansion": 576, "layer_18": 320, "layer_19": 1280}
    assert net.strides == {"layer_15/expansion": 16, "layer_18": 32, "layer_19": 32}
    net16 = MobileNetV2(num_classes=None, output_stride=16, out_taps=("layer_18",))
    assert net16.strides == {"layer_18": 16}
    # Truncated after the deepest tap: no 1280-channel layer when only layer 18 is asked for.
    assert len(net16.features) == 18


def test_seventeen_inverted_residuals_with_linear_projection() -> None:
    net = build_model("mobilenet_v2", num_classes=1000)
    blocks = [m for m in net.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    taps = MobileNetV2(num_classes=None, out_taps=("layer_18", "layer_4")).eval()
    with torch.no_grad():
        out = taps(torch.randn(2, 3, 96, 96))
    # Linear bottleneck: no ReLU after the projection, so block outputs go negative.
    assert (out["layer_18"] < 0).any() and (out["layer_4"] < 0).any()
    # The shortcut only where stride is 1 and widths agree; t=1 block has no expansion conv.
    assert not blocks[0].has_expansion and not blocks[0].use_res_connect
    assert blocks[2].use_res_connect and not blocks[1].use_res_connect


def test_torchvision_weights_load_strict_and_agree() -> None:
    ours = build_model("mobilenet_v2", num_classes=1000).eval()
    theirs = torchvision.models.mobilenet_v2().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() < 1e-4


def test_weights_from_local_file(tmp_path) -> None:
    theirs = torchvision.models.mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(theirs.state_dict(), path)
    ours = MobileNetV2(num_classes=1000, weights=path).eval()
    assert torch.equal(ours.features[5].conv[1][0].weight, theirs.features[5].conv[1][0].weight)
    # A feature extractor takes the same file and ignores the classifier.
    feats = MobileNetV2(num_classes=None, out_taps=("layer_19",), weights=str(path))
    assert torch.equal(feats.features[18][0].weight, theirs.features[18][0].weight)


def test_wrong_weights_file_names_keys_and_shapes(tmp_path) -> None:
    path = tmp_path / "narrow.pth"
    torch.save(MobileNetV2(num_classes=1000, width_mult=0.5).state_dict(), path)
    with pytest.raises(WeightsError, match="shape mismatches.*features"):
        MobileNetV2(num_classes=1000, weights=path)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="missing keys.*unexpected keys"):
        MobileNetV2(num_classes=1000, weights=other)
    with pytest.raises(WeightsError, match="not found"):
        MobileNetV2(num_classes=1000, weights=tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="unknown weights"):
        MobileNetV2(num_classes=1000, weights="IMAGENET9K_V9")


def test_invalid_arguments_quote_values() -> None:
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        MobileNetV2(output_stride=4)
    with pytest.raises(ValueError, match="unknown taps"):
        MobileNetV2(num_classes=None, out_taps=("layer_99",))


@pytest.mark.parametrize(("built", "changed"), [(16, 8), (32, 16), (8, 32)])
def test_set_output_stride_equals_building_at_that_stride(built: int, changed: int) -> None:
    torch.manual_seed(0)
    source = MobileNetV2(num_classes=None, width_mult=0.35, output_stride=built, out_taps=TAP_NAMES).eval()
    target = MobileNetV2(num_classes=None, width_mult=0.35, output_stride=changed, out_taps=TAP_NAMES).eval()
    target.load_state_dict(source.state_dict())
    source.set_output_stride(changed)
    assert source.strides == target.strides
    x = torch.randn(1, 3, 67, 67)
    with torch.no_grad():
        a, b = source(x), target(x)
    for name in TAP_NAMES:
        torch.testing.assert_close(a[name], b[name])


def test_zero_init_residual_makes_residual_blocks_identities(tmp_path) -> None:
    model = MobileNetV2(num_classes=None, out_taps=("layer_19",), width_mult=0.5, zero_init_residual=True).eval()
    residual = [b for b in model.features if isinstance(b, InvertedResidual) and b.use_res_connect]
    assert len(residual) == 10  # 17 blocks, 7 of them change stride or width
    x = torch.randn(2, residual[0].out_channels, 24, 24)
    with torch.no_grad():
        assert torch.equal(residual[0](x), x)
    # Only those blocks: the projection BN of a block without a shortcut keeps gamma 1.
    plain = next(b for b in model.features if isinstance(b, InvertedResidual) and not b.use_res_connect)
    assert torch.equal(plain.conv[-1].weight, torch.ones_like(plain.conv[-1].weight))
    # Pretrained weights replace the initialisation.
    theirs = torchvision.models.mobilenet_v2(width_mult=0.5)
    path = tmp_path / "mnv2.pth"
    torch.save(theirs.state_dict(), path)
    loaded = MobileNetV2(num_classes=1000, width_mult=0.5, weights=path, zero_init_residual=True)
    index = list(model.features).index(residual[0])
    assert torch.equal(loaded.features[index].conv[-1].weight, theirs.features[index].conv[-1].weight)


def test_imagenet_weights_offline_fail_in_one_line_saying_how_to_pass_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backbone_weights: IMAGENET1K_V1` without network: one line naming the file to fetch and how to pass it."""
    import urllib.error

    from torchvision.models import MobileNet_V2_Weights

    from mobilevision.errors import WeightsError
    from mobilevision.models import build_model

    def offline(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - stands in for torch.hub's download
        import sys

        print('Downloading: "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"', file=sys.stderr)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(type(MobileNet_V2_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(WeightsError) as error:
        build_model("deeplabv3_mobilenet_v2", num_classes=21, weights="IMAGENET1K_V1")
    message = str(error.value)
    assert "\n" not in message
    assert "mobilenet_v2-b0353104.pth" in message and "--model.init_args.backbone_weights=" in message
    assert "Downloading" not in capsys.readouterr().err  # torch.hub's own lines do not bury ours


def test_local_torchvision_weights_file_loads(tmp_path: Path) -> None:
    """The offline path: torchvision's own state_dict file, given by path, loads with strict key matching."""
    import torchvision

    from mobilevision.models import build_model

    path = tmp_path / "mobilenet_v2-b0353104.pth"
    reference = torchvision.models.mobilenet_v2()
    torch.save(reference.state_dict(), path)
    model = build_model("deeplabv3_mobilenet_v2", num_classes=21, weights=str(path))
    first = model.backbone.state_dict()["features.0.0.weight"]
    assert torch.equal(first, reference.state_dict()["features.0.0.weight"])
