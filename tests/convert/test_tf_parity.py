"""Converted TF reference checkpoints compute what the reference computed (tests/fixtures/tf, made by
tools/tf_reference/make_fixtures.py with tensorflow/models' own code): feature maps, classifier logits, DeepLab logits,
to 1e-4 of the outputs' scale; and bad checkpoints are one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.cli import main
from mobilevision.convert import tf_convert
from mobilevision.convert.tf_checkpoint import read_tf_checkpoint
from mobilevision.convert.tf_convert import convert_tf

from .test_tf_checkpoint import FIXTURES, unpack

CLASSIFIER, DEEPLAB = "mobilenet_v2_035_classifier", "deeplabv3_mnv2_050_os16"


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2) if a.ndim == 4 else torch.from_numpy(a)


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(got, expected, atol=1e-4 * scale, rtol=0)


@pytest.fixture(scope="module")
def outputs():
    return {m: dict(np.load(FIXTURES / m / "outputs.npz")) for m in (CLASSIFIER, DEEPLAB)}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return convert_tf(unpack(CLASSIFIER, tmp_path_factory.mktemp("cls")))


@pytest.fixture(scope="module")
def deeplab_prefix(tmp_path_factory):
    return unpack(DEEPLAB, tmp_path_factory.mktemp("seg"))


def test_classifier_logits_and_feature_maps(classifier, outputs) -> None:
    model, kind, kwargs = classifier
    assert kind == "classifier" and kwargs == {"num_classes": 1000, "width_mult": 0.35, "tf_exact": True}
    out = outputs[CLASSIFIER]
    x = nchw(out["input"])
    features = model.features
    with torch.no_grad():
        close(features[0](x), nchw(out["layer_1"]))
        close(features[:2](x), nchw(out["layer_2"]))
        close(features[14].conv[0](features[:14](x)), nchw(out["layer_15/expansion_output"]))
        close(features[:18](x), nchw(out["layer_18"]))
        close(features(x), nchw(out["layer_19"]))
        # The 1001 TF outputs (0 = background) are torchvision's 1000.
        close(model(x), torch.from_numpy(out["Logits"][:, 1:]))


def test_deeplab_logits_and_feature_maps(deeplab_prefix, outputs) -> None:
    model, kind, kwargs = convert_tf(deeplab_prefix)
    assert kind == "deeplab" and kwargs["width_mult"] == 0.5 and kwargs["num_classes"] == 21
    out = outputs[DEEPLAB]
    images = (nchw(out["input"]) + 1) * 127.5  # the model takes 0..255 and scales to [-1, 1] itself
    with torch.no_grad():
        taps = model.backbone(model.normalize(images))
        close(taps["layer_18"], nchw(out["layer_18"]))
        close(model.head(taps["layer_18"]), nchw(out["logits"]))
        close(model(images), nchw(out["logits_upsampled"]))


def test_without_tf_exact_the_same_weights_differ(deeplab_prefix, outputs) -> None:
    """A control: the weights loaded into the PyTorch-default arithmetic do not reach parity."""
    from mobilevision.models.segmenter import deeplabv3_mobilenet_v2

    model, _, kwargs = convert_tf(deeplab_prefix)
    plain = deeplabv3_mobilenet_v2(**{**kwargs, "tf_exact": False}).eval()
    plain.load_state_dict(model.state_dict())
    out = outputs[DEEPLAB]
    with torch.no_grad():
        got = plain((nchw(out["input"]) + 1) * 127.5)
    assert float((got - nchw(out["logits_upsampled"])).abs().max()) > 1e-2


def test_deeplab_os8_is_the_same_weights(deeplab_prefix) -> None:
    model, _, kwargs = convert_tf(deeplab_prefix, output_stride=8)
    assert kwargs["output_stride"] == 8 and model.output_stride == 8
    with torch.no_grad():
        assert model(torch.full((1, 3, 33, 33), 128.0)).shape == (1, 21, 33, 33)


def test_cli_writes_checkpoints_that_load(tmp_path, deeplab_prefix, capsys) -> None:
    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.models.backbones.mobilenet_v2 import MobileNetV2

    seg = tmp_path / "deeplab.ckpt"
    assert main(["convert", "tf", str(deeplab_prefix), "--output", str(seg), "--input-size", "64"]) == 0
    model, meta = load_checkpoint(seg)
    assert meta.task == "segmentation" and meta.class_names[15] == "person" and model.align_corners
    cls = tmp_path / "imagenet.pt"
    prefix = unpack(CLASSIFIER, tmp_path)
    assert main(["convert", "tf", str(prefix), "--output", str(cls)]) == 0
    # The classifier's backbone serves as backbone_weights.
    backbone = MobileNetV2(num_classes=None, width_mult=0.35, out_taps=["layer_18"], weights=cls)
    assert backbone.features[0][0].weight.shape == (16, 3, 3, 3)


def _run_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_checkpoints_exit_2(tmp_path, capsys, monkeypatch) -> None:
    prefix = unpack(DEEPLAB, tmp_path)
    (tmp_path / "c").mkdir()
    out = ["--output", str(tmp_path / "x.ckpt")]
    assert "multiple of 16" in _run_error(capsys, ["convert", "tf", str(prefix), "--input-size", "65", *out])
    assert "width 0.5" in _run_error(capsys, ["convert", "tf", str(prefix), "--width", "1.0", *out])
    variables = read_tf_checkpoint(prefix)

    def patched(changes):
        monkeypatch.setattr(tf_convert, "read_tf_checkpoint", lambda path: changes(dict(variables)))

    patched(lambda v: {**v, "aspp0/extra": np.zeros(3, np.float32)})
    assert "unmapped variables" in _run_error(capsys, ["convert", "tf", str(prefix), *out])
    patched(lambda v: {k: a for k, a in v.items() if not k.startswith("MobilenetV2/expanded_conv_3/")})
    assert "expected variables missing" in _run_error(capsys, ["convert", "tf", str(prefix), *out])
    patched(lambda v: {k.replace("aspp0", "aspp_x").replace("logits/", "lg/"): a for k, a in v.items()})
    assert "not a MobileNetV2 classifier, DeepLab or SSDLite" in _run_error(
        capsys, ["convert", "tf", str(prefix), *out]
    )
    logits = "MobilenetV2/Logits/Conv2d_1c_1x1"
    classifier_variables = read_tf_checkpoint(unpack(CLASSIFIER, tmp_path / "c"))
    monkeypatch.setattr(
        tf_convert,
        "read_tf_checkpoint",
        lambda path: {
            **classifier_variables,
            f"{logits}/biases": np.zeros(1000, np.float32),
            f"{logits}/weights": classifier_variables[f"{logits}/weights"][..., :1000],
        },
    )
    assert "expected ImageNet's 1001" in _run_error(capsys, ["convert", "tf", str(prefix), *out])
    monkeypatch.undo()
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    assert str(tmp_path) in _run_error(capsys, ["convert", "tf", str(prefix), *out])


def test_deeplab_os8_matches_the_reference_at_os8(deeplab_prefix) -> None:
    """The OS8 fixture: the reference built at output stride 8 from the same checkpoint (its generator checks the
    checkpoint is byte-identical to the OS16 one), against the OS16 checkpoint converted with output_stride=8."""
    out = dict(np.load(FIXTURES / "deeplabv3_mnv2_050_os8" / "outputs.npz"))
    model, _, kwargs = convert_tf(deeplab_prefix, output_stride=8)
    assert kwargs["output_stride"] == 8
    images = (nchw(out["input"]) + 1) * 127.5
    with torch.no_grad():
        taps = model.backbone(model.normalize(images))
        close(taps["layer_18"], nchw(out["layer_18"]))
        close(model.head(taps["layer_18"]), nchw(out["logits"]))
        close(model(images), nchw(out["logits_upsampled"]))
