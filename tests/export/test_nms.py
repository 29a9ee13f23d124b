"""NMS inside the graph (`mobilevision.export.nms`): the same detections as `DetectionPostprocess`, in torch,
through onnxruntime, and (`StaticNmsDetector`, the LiteRT / ExecuTorch form) as a static-shape `torch.export`
program. The mobile runtimes themselves run it in tests/export/test_mobile_runtimes.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mobilevision.export.nms import NMS_OUTPUTS, NmsDetector, StaticNmsDetector, export_nms_onnx
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


@pytest.mark.parametrize("threshold", [0.3, 0.7, 0.999])
def test_static_nms_matches_postprocess(threshold: float) -> None:
    """Capped at 100 (0.3), fewer than the cap (0.7: 68 on the first image), none (0.999)."""
    model = small_detector()
    wrapped = StaticNmsDetector(model, score_threshold=threshold).eval()
    counts = []
    for image in parity_images(SIZE, 3, seed=0).split(1):
        with torch.no_grad():
            got = wrapped(image)
        _assert_same(got, _reference(model, image, threshold))
        counts.append(int(got[3][0]))
    assert {0.3: max(counts) == 100, 0.7: 0 < min(counts) < 100, 0.999: max(counts) == 0}[threshold], counts


def test_static_nms_suppresses_in_rank_order() -> None:
    """A chain a > b > c where a overlaps b and b overlaps c but a does not overlap c: greedy NMS keeps a and c (b is
    suppressed by a, so it cannot suppress c); a one-pass 'suppressed by any better box' rule would drop c."""

    class Chain(torch.nn.Module):
        postprocessor = None

        def forward_raw(self, images):
            logits = torch.tensor([[0.0, 3.0], [0.0, 2.0], [0.0, 1.0], [5.0, -5.0]])  # softmax over (bg, fg)
            anchors = torch.tensor([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10], [40, 40, 50, 50]]).float()
            return {"cls_logits": logits[None], "bbox_regression": torch.zeros(1, 4, 4)}, anchors

    from mobilevision.models.postprocess import DetectionPostprocess

    chain = Chain()
    chain.postprocessor = DetectionPostprocess(nms_threshold=0.2, detections_per_image=5)
    boxes, scores, labels, count = StaticNmsDetector(chain, score_threshold=0.5)(torch.zeros(1, 3, 64, 64))
    assert int(count[0]) == 2
    assert boxes[0, :2].tolist() == [[0, 0, 10, 10], [12, 0, 22, 10]]
    assert labels[0].tolist() == [1, 1, 0, 0, 0] and (scores[0, 2:] == 0).all()


def test_static_nms_exports_as_a_static_program() -> None:
    """`torch.export` (the entry of both mobile exporters) takes it whole: no data-dependent shape, and the program
    gives the eager detections."""
    model = small_detector()
    image = parity_images(SIZE, 1, seed=0)
    wrapped = StaticNmsDetector(model, score_threshold=0.7, prefix=120).eval()
    with torch.no_grad():
        program = torch.export.export(wrapped, (image,))
        got = program.module()(image)
    assert 0 < int(got[3][0]) < 100
    _assert_same(got, _reference(model, image, 0.7))


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
    # The Predictor post-processes raw outputs: it refuses the NMS graph with one line naming the raw file.
    from mobilevision.errors import UserError
    from mobilevision.inference.predictor import Predictor

    with pytest.raises(UserError, match=r"det\.nms\.onnx: a graph with decoding and NMS inside.*det\.onnx"):
        Predictor(tmp_path / "det.nms.onnx")
    seg = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta(input_size=(64, 64)))
    assert main(["export", "--weights", str(seg), "--nms"]) == 2
    assert "only detectors" in capsys.readouterr().err
