from __future__ import annotations

import pytest
import torch

from mobilevision import build_model
from mobilevision.models.detector import prior_bias


def _tiny(**kwargs):
    return build_model("ssdlite_mobilenet_v2", num_classes=4, width_mult=0.35, **kwargs).eval()


def test_output_format_is_torchvision_style() -> None:
    model = _tiny(score_threshold=0.0, detections_per_image=7)
    images = torch.randint(0, 256, (2, 3, 160, 224), dtype=torch.uint8)
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].dtype == torch.float32 and det["boxes"].shape == (7, 4)
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1 and det["labels"].max() <= 3
        # Best first in the post-processor's canonical ranking: score at a resolution of 2^-20, near-ties by position.
        ranked = torch.round(det["scores"] * 2.0**20)
        assert (ranked[:-1] >= ranked[1:]).all()
        b = det["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 224).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 160).all()


def test_empty_result_when_nothing_passes_the_threshold() -> None:
    model = _tiny(score_threshold=1.0)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 128))
    assert out[0]["boxes"].shape == (0, 4) and out[0]["scores"].shape == (0,) and out[0]["labels"].shape == (0,)


def test_raw_outputs_match_anchor_count() -> None:
    model = _tiny()
    with torch.no_grad():
        raw, anchors = model.forward_raw(torch.zeros(1, 3, 320, 320))
    assert anchors.shape == (1200 + 139 * 6, 4)
    assert raw["cls_logits"].shape == (1, anchors.shape[0], 4)
    with torch.no_grad():
        raw_levels, anchors_levels, level_sizes = model.forward_levels(torch.zeros(1, 3, 320, 320))
    # 20x20 with 3 boxes (the reduced lowest map), then 10x10, 5x5, 3x3, 2x2, 1x1 with 6.
    assert level_sizes == [1200, 600, 150, 54, 24, 6]
    assert torch.equal(anchors_levels, anchors) and torch.equal(raw_levels["cls_logits"], raw["cls_logits"])


def test_nms_suppresses_same_class_duplicates() -> None:
    model = _tiny(score_threshold=0.0, nms_threshold=0.5)
    # Zero offsets decode to the default boxes themselves; log-probabilities are logits whose softmax they are.
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.5], [50.0, 50.0, 60.0, 60.0]])
    probabilities = torch.tensor([[[0.1, 0.9, 0.0, 0.0], [0.1, 0.8, 0.1, 0.0], [0.2, 0.0, 0.0, 0.8]]])
    outputs = {"cls_logits": probabilities.log(), "bbox_regression": torch.zeros(1, 3, 4)}
    (det,) = model.postprocess(outputs, anchors, (100, 100))
    # Box 1 is a duplicate of box 0 in class 1 but stays as class 2 (NMS is per class).
    pairs = sorted(zip(det["labels"].tolist(), [round(s, 2) for s in det["scores"].tolist()]))
    assert pairs == [(1, 0.9), (2, 0.1), (3, 0.8)]


def test_class_prior_sets_the_initial_foreground_probability() -> None:
    for classification in ("softmax", "sigmoid"):
        bias = torch.tensor(prior_bias(0.01, 6, classification))
        if classification == "softmax":
            probs = bias.softmax(0)
            assert abs(probs[0].item() - 0.99) < 1e-6 and torch.allclose(probs[1:], torch.full((5,), 0.002))
        else:
            assert torch.allclose(bias[1:].sigmoid(), torch.full((5,), 0.01)) and abs(bias[0].sigmoid() - 0.99) < 1e-6
    model = _tiny(class_prior=0.05)
    expected = torch.tensor(prior_bias(0.05, 4, "softmax"))
    for predictor in model.head.cls_heads:
        assert torch.allclose(predictor[-1].bias.view(-1, 4), expected.expand(predictor[-1].out_channels // 4, 4))
    assert all((p[-1].bias == 0).all() for p in _tiny(class_prior=None).head.cls_heads)
    with pytest.raises(ValueError, match="class_prior"):
        _tiny(class_prior=1.5)
