"""NMS inside the graph (`mobilevision.export.nms`): the same detections as `DetectionPostprocess`, in torch and
through onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mobilevision.export.nms import NMS_OUTPUTS, NmsDetector, export_nms_onnx
from mobilevision.export.onnx import make_session, parity_images
from tests.inference.models_for_tests import small_detector

SIZE = (160, 160)


def _reference(model: torch.nn.Module, image: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """What mobilevision's own post-processing makes of the raw outputs (boxes in input pixels)."""
    from mobilevision.tasks.detection.inference import postprocess_for

    with torch.no_grad():
        outputs, anchors = model.forward_raw(image)
    post = postprocess_for(model, score_threshold=threshold)
    return post(outputs["cls_logits"][0], outputs["bbox_regression"][0], anchors, input_size=SIZE)


def _assert_same(got: tuple, ref: dict[str, torch.Tensor]) -> None:
    boxes, scores, labels, count = (torch.as_tensor(np.asarray(t)) for t in got)
    n = int(count[0])
    assert n == ref["boxes"].shape[0]
    assert boxes.shape[1] == scores.shape[1] == labels.shape[1]  # the fixed maximum count
    torch.testing.assert_close(boxes[0, :n].float(), ref["boxes"].float(), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(scores[0, :n].float(), ref["scores"].float(), atol=1e-5, rtol=1e-4)
    assert torch.equal(labels[0, :n].long(), ref["labels"].long())
    assert (scores[0, n:] == 0).all() and (labels[0, n:] == 0).all()


@pytest.mark.parametrize("threshold", [0.3, 0.05])
def test_nms_in_torch_matches_postprocess(threshold: float) -> None:
    model = small_detector()
    wrapped = NmsDetector(model, score_threshold=threshold, prefix=4000).eval()
    for image in parity_images(SIZE, 3, seed=0).split(1):
        with torch.no_grad():
            got = wrapped(image)
        _assert_same(got, _reference(model, image, threshold))


@pytest.mark.parametrize("threshold", [0.3, 0.05])
def test_nms_in_onnx_matches_postprocess(threshold: float) -> None:
    model = small_detector()
    data = export_nms_onnx(model, SIZE, score_threshold=threshold, prefix=4000)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "NonMaxSuppression" in ops and "TopK" in ops
    session = make_session(data, num_threads=1)
    assert [o.name for o in session.get_outputs()] == list(NMS_OUTPUTS)
    for image in parity_images(SIZE, 3, seed=0).split(1):
        got = session.run(list(NMS_OUTPUTS), {"images": image.numpy()})
        _assert_same(got, _reference(model, image, threshold))


def test_nms_onnx_no_detection() -> None:
    """A threshold nothing passes: zero valid rows, the padding only."""
    model = small_detector()
    session = make_session(export_nms_onnx(model, SIZE, score_threshold=0.999), num_threads=1)
    boxes, scores, labels, count = session.run(None, {"images": parity_images(SIZE, 1, seed=0).numpy()})
    assert int(count[0]) == 0 and boxes.shape == (1, 100, 4) and not scores.any() and not labels.any()


def test_export_cli_nms_writes_a_checked_graph(tmp_path, capsys) -> None:
    from mobilevision.checkpoint import save_checkpoint
    from mobilevision.cli import main
    from tests.inference.models_for_tests import detector_meta, segmenter_meta, small_segmenter

    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    assert main(["export", "--weights", str(ckpt), "--nms"]) == 0
    out = capsys.readouterr().out
    assert "NMS graph parity OK" in out, out
    session = make_session(tmp_path / "det.nms.onnx", num_threads=1)
    assert [o.name for o in session.get_outputs()] == list(NMS_OUTPUTS)
    seg = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta(input_size=(64, 64)))
    assert main(["export", "--weights", str(seg), "--nms"]) == 2
    assert "only detectors" in capsys.readouterr().err
