"""TF-exactness facts measured on the reference's own output (tests/fixtures/tf), for the converter to honour.

The first layer of the reference MobileNetV2 (`MobilenetV2/Conv`, 3x3 stride 2, SAME, BatchNorm, ReLU6) is
recomputed here in PyTorch from the fixture checkpoint: it equals the reference only with TF's SAME padding at
stride 2 (0 rows/cols on top/left, 1 on bottom/right for an even input) and BatchNorm epsilon 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilevision.convert.tf_checkpoint import read_tf_checkpoint

from .test_tf_checkpoint import FIXTURES, unpack

MODEL = "mobilenet_v2_035_classifier"


def first_layer(weights: dict[str, np.ndarray], image: np.ndarray, pad: tuple[int, int, int, int], eps: float):
    """relu6(BN(conv3x3/2(pad(image)))) in NCHW; `pad` as F.pad's (left, right, top, bottom)."""
    x = F.pad(torch.from_numpy(image).permute(0, 3, 1, 2), pad)
    kernel = torch.from_numpy(weights["MobilenetV2/Conv/weights"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
    y = F.conv2d(x, kernel, stride=2)
    g, b, m, v = (
        torch.from_numpy(weights[f"MobilenetV2/Conv/BatchNorm/{n}"])[:, None, None]
        for n in ("gamma", "beta", "moving_mean", "moving_variance")
    )
    return ((y - m) / torch.sqrt(v + eps) * g + b).clamp(0, 6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    prefix = unpack(MODEL, tmp_path_factory.mktemp("ckpt"))
    with np.load(FIXTURES / MODEL / "outputs.npz") as outputs:
        return read_tf_checkpoint(prefix), outputs["input"], torch.from_numpy(outputs["layer_1"]).permute(0, 3, 1, 2)


def test_inputs_are_in_minus_one_one(reference) -> None:
    _, image, _ = reference
    assert -1 <= image.min() < -0.99 and 0.99 < image.max() <= 1


def test_same_padding_bottom_right_and_epsilon_1e3(reference) -> None:
    weights, image, expected = reference
    got = first_layer(weights, image, (0, 1, 0, 1), 1e-3)
    torch.testing.assert_close(got, expected, atol=1e-4 * float(expected.abs().max()), rtol=0)


@pytest.mark.parametrize("pad, eps", [((1, 1, 1, 1), 1e-3), ((0, 1, 0, 1), 1e-5)], ids=["symmetric-pad", "eps-1e-5"])
def test_pytorch_defaults_differ(reference, pad, eps) -> None:
    weights, image, expected = reference
    got = first_layer(weights, image, pad, eps)[..., : expected.shape[2], : expected.shape[3]]
    assert float((got - expected).abs().max()) > 1e-3


DEEPLAB = "deeplabv3_mnv2_050_os16"


def _bn_relu(weights, scope: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    """relu(BN(1x1 conv(x))) for a slim conv scope, NCHW."""
    kernel = torch.from_numpy(weights[f"{scope}/weights"]).permute(3, 2, 0, 1)
    g, b, m, v = (
        torch.from_numpy(weights[f"{scope}/BatchNorm/{n}"])[:, None, None]
        for n in ("gamma", "beta", "moving_mean", "moving_variance")
    )
    return ((F.conv2d(x, kernel) - m) / torch.sqrt(v + eps) * g + b).relu()


@pytest.mark.parametrize("eps, equal", [(1e-5, True), (1e-3, False)])
def test_deeplab_head_epsilon_1e5_and_pooling_broadcast(tmp_path, eps: float, equal: bool) -> None:
    """DeepLab's head (image_pooling, aspp0, concat_projection) uses BatchNorm epsilon 1e-5, the backbone 1e-3;
    image pooling is a global average whose 1x1-conv output is broadcast (align_corners resize of a 1x1 map)."""
    weights = read_tf_checkpoint(unpack(DEEPLAB, tmp_path))
    with np.load(FIXTURES / DEEPLAB / "outputs.npz") as outputs:
        features = torch.from_numpy(outputs["layer_18"]).permute(0, 3, 1, 2)
        expected = torch.from_numpy(outputs["concat_projection"]).permute(0, 3, 1, 2)
        logits = torch.from_numpy(outputs["logits"]).permute(0, 3, 1, 2)
    pooled = _bn_relu(weights, "image_pooling", features.mean((2, 3), keepdim=True), eps).expand(-1, -1, 5, 5)
    got = _bn_relu(weights, "concat_projection", torch.cat([pooled, _bn_relu(weights, "aspp0", features, eps)], 1), eps)
    close = torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()), rtol=0)
    assert close == equal
    if equal:
        kernel = torch.from_numpy(weights["logits/semantic/weights"]).permute(3, 2, 0, 1)
        semantic = F.conv2d(got, kernel, torch.from_numpy(weights["logits/semantic/biases"]))
        torch.testing.assert_close(semantic, logits, atol=1e-4 * float(logits.abs().max()), rtol=0)


def test_deeplab_upsampling_is_bilinear_align_corners() -> None:
    """The logits reach the image size by `tf.image.resize_bilinear(align_corners=True)`: PyTorch's
    `interpolate(mode="bilinear", align_corners=True)`, not the align_corners=False default."""
    with np.load(FIXTURES / DEEPLAB / "outputs.npz") as outputs:
        logits = torch.from_numpy(outputs["logits"]).permute(0, 3, 1, 2)
        expected = torch.from_numpy(outputs["logits_upsampled"]).permute(0, 3, 1, 2)
    atol = 1e-4 * float(expected.abs().max())
    got = F.interpolate(logits, size=expected.shape[2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(got, expected, atol=atol, rtol=0)
    other = F.interpolate(logits, size=expected.shape[2:], mode="bilinear", align_corners=False)
    assert float((other - expected).abs().max()) > atol
