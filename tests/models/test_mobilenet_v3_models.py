"""The detector, segmenter and joint model built on MobileNetV3-Large through `backbone=` and the short names."""

from __future__ import annotations

import torch

from mobilevision.models import build_model


def test_ssdlite_on_v3_reads_the_declared_taps() -> None:
    model = build_model("ssdlite_mobilenet_v3_large", num_classes=4, width_mult=0.5).eval()
    assert model.taps == ("layer_14/expansion", "layer_17")  # torchvision's SSDLite taps: 672 ch (width 1) and last
    same = build_model("ssdlite_mobilenet_v2", backbone="mobilenet_v3_large", num_classes=4, width_mult=0.5)
    assert same.taps == model.taps and type(same.backbone) is type(model.backbone)
    # Checkpoints store layer names: they rebuild the same network.
    again = build_model("ssdlite_mobilenet_v3_large", num_classes=4, width_mult=0.5, taps=list(model.taps))
    again.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        detections = model(torch.zeros(1, 3, 128, 128))
    assert set(detections[0]) == {"boxes", "scores", "labels"}


def test_deeplabv3_on_v3_reads_the_last_map_at_os16() -> None:
    model = build_model("deeplabv3_mobilenet_v3_large", num_classes=3, width_mult=0.5).eval()
    assert model.tap == "layer_17" and model.output_stride == 16
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 65, 80)).shape == (1, 3, 65, 80)
    model.set_output_stride(8)
    assert model.output_stride == 8


def test_joint_model_on_v3() -> None:
    model = build_model("ssdlite_deeplabv3_mobilenet_v3_large", num_classes=4, seg_num_classes=3, width_mult=0.5)
    assert model.seg_tap == "layer_17" and model.taps == ("layer_17",)
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 96, 96))
    assert out[0]["mask"].shape == (96, 96)
