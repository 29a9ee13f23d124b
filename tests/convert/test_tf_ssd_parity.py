"""A converted TF SSDLite (the fixture: tensorflow/models' object_detection SSDLite MobileNetV2 at width 0.35, 91
outputs, 160x160, made by tools/tf_reference/make_fixtures.py --only ssdlite) computes what the reference computed:
feature maps, raw box encodings and class logits per anchor, the anchors, and the detections after the reference's
post-processing, to 1e-4 of their scale; bad checkpoints are one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.cli import main
from mobilevision.convert import tf_convert
from mobilevision.convert.tf_checkpoint import read_tf_checkpoint
from mobilevision.convert.tf_convert import convert_tf
from mobilevision.convert.tf_ssd import COCO_91_CLASSES

from .test_tf_checkpoint import FIXTURES, unpack
from .test_tf_parity import _run_error, close, nchw

SSD = "ssdlite_mobilenet_v2_035_coco"
YXYX_TO_XYXY = [1, 0, 3, 2]  # TF boxes (ymin, xmin, ymax, xmax) and codes (ty, tx, th, tw): swap each pair


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURES / SSD / "outputs.npz"))


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    return unpack(SSD, tmp_path_factory.mktemp("ssd"))


@pytest.fixture(scope="module")
def converted(prefix):
    torch.set_num_threads(1)
    return convert_tf(prefix)


def test_feature_maps_encodings_logits_and_anchors(converted, reference) -> None:
    model, kind, kwargs = converted
    assert kind == "ssdlite" and kwargs["width_mult"] == 0.35 and kwargs["extra_depths"] == [179, 89, 89, 44]
    assert kwargs["backbone_kwargs"] == {"min_channels": 16, "last_channels": 448}  # min_depth 16, base scaled
    images = torch.from_numpy(reference["input"]).permute(0, 3, 1, 2).float()  # uint8 0..255, scaled inside
    with torch.no_grad():
        taps = model.backbone(model.normalize(images))
        maps = model.head.feature_maps([taps[t] for t in model.taps])
        assert len(maps) == 6
        for i, got in enumerate(maps):
            close(got, nchw(reference[f"feature_map_{i}"]))
        outputs, anchors = model.forward_raw(images)
    close(outputs["cls_logits"], torch.from_numpy(reference["class_predictions_with_background"]))
    close(outputs["bbox_regression"], torch.from_numpy(reference["box_encodings"][..., YXYX_TO_XYXY]))
    assert anchors.shape == (540, 4)
    close(anchors, torch.from_numpy(reference["anchors"][:, YXYX_TO_XYXY]) * 160)


def test_decoded_detections_match_the_reference_post_processing(converted, reference) -> None:
    model, _, _ = converted
    images = torch.from_numpy(reference["input"]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        (detections,) = model(images)
    expected_boxes = torch.from_numpy(reference["detection_boxes"][:, YXYX_TO_XYXY]) * 160
    assert detections["boxes"].shape == expected_boxes.shape == (100, 4)
    close(detections["boxes"], expected_boxes)
    close(detections["scores"], torch.from_numpy(reference["detection_scores"]))
    # TF's classes are 0-based foreground indices; mobilevision's labels are the 91 outputs, i.e. COCO ids.
    assert detections["labels"].tolist() == (reference["detection_classes"].astype(np.int64) + 1).tolist()


def test_the_zoo_geometry_has_1917_anchors_at_300(converted) -> None:
    model, _, _ = converted
    with torch.no_grad():
        outputs, anchors, sizes = model.forward_levels(torch.zeros(1, 3, 300, 300))
    assert anchors.shape[0] == 1917 == outputs["cls_logits"].shape[1]
    assert sizes == [19 * 19 * 3, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 6, 2 * 2 * 6, 1 * 6]
    assert model.default_boxes.num_anchors == [3, 6, 6, 6, 6, 6]


def test_anchors_of_a_non_square_input_are_the_references(converted, reference) -> None:
    """TF scales the base anchor by min(H, W) / H and / W (`square_pixels`): on 160x224 a ratio-1 box is square in
    pixels, and all 738 anchors are the reference's."""
    model, _, _ = converted
    sizes = [(10, 14), (5, 7), (3, 4), (2, 2), (1, 1), (1, 1)]
    boxes = model.default_boxes.pixels(sizes, (160, 224))
    expected = torch.from_numpy(reference["anchors_160x224"][:, YXYX_TO_XYXY]) * torch.tensor([224, 160, 224, 160.0])
    close(boxes, expected)
    w, h = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]  # map 0, box (0.1, ratio 1): 0.1 of 160
    assert float(w) == pytest.approx(16.0) and float(h) == pytest.approx(16.0)


def test_cli_writes_a_coco_detector(tmp_path, prefix) -> None:
    from mobilevision.checkpoint import load_checkpoint

    ckpt = tmp_path / "ssd.ckpt"
    assert main(["convert", "tf", str(prefix), "--output", str(ckpt), "--input-size", "160"]) == 0
    model, meta = load_checkpoint(ckpt)
    assert meta.task == "detection" and meta.input_size == (160, 160)
    assert meta.class_names[1] == "person" and meta.class_names[90] == "toothbrush" and meta.class_names[12] == "N/A"
    assert meta.category_ids == list(range(91)) and len(COCO_91_CLASSES) == 91
    assert model.classification == "sigmoid" and model.tf_exact and model.default_boxes.square_pixels


def test_bad_ssd_checkpoints_exit_2(tmp_path, capsys, monkeypatch, prefix) -> None:
    out = ["--output", str(tmp_path / "x.ckpt")]
    argv = ["convert", "tf", str(prefix), *out]
    assert "width 0.35" in _run_error(capsys, [*argv, "--width", "0.5"])
    variables = read_tf_checkpoint(prefix)

    def patched(changes):
        monkeypatch.setattr(tf_convert, "read_tf_checkpoint", lambda path: changes(dict(variables)))

    patched(lambda v: {**v, "BoxPredictor_6/ClassPredictor/biases": np.zeros(3, np.float32)})
    assert "unmapped variables" in _run_error(capsys, argv)
    patched(lambda v: {k: a for k, a in v.items() if not k.startswith("BoxPredictor_3/ClassPredictor_depthwise")})
    assert "expected variables missing" in _run_error(capsys, argv)
    name = "BoxPredictor_0/ClassPredictor/biases"
    patched(lambda v: {**v, name: v[name][: 3 * 81]})  # an 80-class (81-output) label map
    assert "expected COCO's 91" in _run_error(capsys, argv)
    patched(lambda v: {k.replace("Predictor_depthwise", "Predictor_x"): a for k, a in v.items()})  # plain SSD
    assert "only ssdlite_mobilenet_v2 is converted" in _run_error(capsys, argv)
    patched(lambda v: {k: a for k, a in v.items() if "layer_19_2_Conv2d_5" not in k})
    assert "layer_19_2_Conv2d_2..5" in _run_error(capsys, argv)
