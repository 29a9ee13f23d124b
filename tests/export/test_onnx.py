from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mobilevision.checkpoint import ModelMeta, save_checkpoint
from mobilevision.cli import main
from mobilevision.errors import WeightsError
from mobilevision.export.onnx import export_onnx, make_session, parity_check, read_metadata
from mobilevision.inference.predictor import Predictor
from tests.inference.models_for_tests import (
    calibrate_batchnorm,
    detector_meta,
    random_image,
    segmenter_meta,
    small_detector,
    small_segmenter,
)


def test_detector_parity_and_interface(tmp_path: Path) -> None:
    model, meta = small_detector(), detector_meta(input_size=(128, 128))
    path = export_onnx(model, tmp_path / "det.onnx", meta)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    assert [o.name for o in proto.graph.output] == ["cls_logits", "bbox_regression", "anchors"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # The default boxes are one constant of the graph, not shape arithmetic evaluated on every run.
    producer = next(n for n in proto.graph.node if "anchors" in n.output)
    assert producer.op_type == "Constant" and not {"Range", "Expand"} & {n.op_type for n in proto.graph.node}
    loaded_meta, metadata = read_metadata(path)
    from mobilevision.tasks.detection.inference import postprocess_from_metadata

    post = postprocess_from_metadata(metadata)
    assert loaded_meta == meta and post is not None and post.nms_threshold == model.nms_threshold
    report = parity_check(model, make_session(path), input_size=(128, 128), thresholds=(0.3, 0.05), num_images=3)
    assert report.max_relative_diff <= 1e-4, report.format()
    assert report.detections_identical, report.format()
    assert report.detections[0]["reference"] > 10, "the test model must produce detections above 0.3"
    assert report.max_abs_diff["anchors"] == 0.0


def test_dynamic_batch(tmp_path: Path) -> None:
    path = export_onnx(small_detector(), tmp_path / "det.onnx", detector_meta(input_size=(96, 96)))
    session = make_session(path, num_threads=1)
    cls, box, anchors = session.run(None, {"images": np.zeros((3, 3, 96, 96), np.float32)})
    assert cls.shape[0] == 3 and box.shape[0] == 3 and anchors.shape == (cls.shape[1], 4)


def test_segmenter_parity(tmp_path: Path) -> None:
    model = small_segmenter()
    path = export_onnx(model, tmp_path / "seg.onnx", segmenter_meta(input_size=(96, 128)))
    report = parity_check(model, make_session(path), input_size=(96, 128))
    assert report.max_abs_diff["logits"] <= 1e-4


def test_predictor_on_onnx_equals_torch(tmp_path: Path) -> None:
    model, meta = small_detector(), detector_meta(input_size=(128, 128))
    path = export_onnx(model, tmp_path / "det.onnx", meta)
    image = random_image(150, 200)
    a = Predictor(path)(image)
    b = Predictor(model, meta=meta, optimize=False)(image)
    assert len(a["labels"]) > 0 and np.array_equal(a["labels"], b["labels"]) and a["names"] == b["names"]
    assert np.allclose(a["boxes"], b["boxes"], atol=1e-2)
    with pytest.raises(ValueError, match="input size"):
        Predictor(path, input_size=(64, 64))
    with pytest.raises(ValueError, match="onnxruntime"):
        Predictor(path, backend="torch")


def test_onnx_without_metadata_is_refused(tmp_path: Path) -> None:
    path = export_onnx(small_segmenter(), tmp_path / "seg.onnx", segmenter_meta(input_size=(64, 64)))
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(WeightsError, match="metadata"):
        Predictor(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="junk.onnx"):
        Predictor(tmp_path / "junk.onnx")


def test_export_cli_prints_parity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    assert main(["export", "--weights", str(ckpt), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "cls_logits: max |diff|" in out and "relative" in out and "parity OK" in out and "identical" in out
    assert (tmp_path / "det.onnx").is_file()
    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "det.onnx")).metadata_props}["mobilevision"])
    assert meta["class_names"][1] == "thing1" and meta["input_size"] == [96, 96]


def test_export_cli_refuses_pickled_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_checkpoint import _evil_checkpoint

    path, marker = _evil_checkpoint(tmp_path)
    assert main(["export", "--weights", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err and not marker.exists()


def test_full_size_81_class_model_parity(tmp_path: Path) -> None:
    """The paper's model (width 1.0, 81 classes, 320x320), as the README's parity claim states."""
    from mobilevision.models import build_model

    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=81)
    calibrate_batchnorm(model)  # realistic activation scales, so differences are not hidden by vanishing outputs
    meta = ModelMeta.for_model(model, model_name="ssdlite_mobilenet_v2", model_kwargs={"num_classes": 81})
    path = export_onnx(model, tmp_path / "full.onnx", meta)
    report = parity_check(model, make_session(path), input_size=(320, 320), thresholds=(0.3, 0.01), num_images=1)
    assert report.max_relative_diff <= 1e-4 and report.detections_identical, report.format()
    assert report.detections[1]["reference"] > 0, report.format()


def _confident_detector(scale: float = 50.0) -> torch.nn.Module:
    """small_detector with its class logits multiplied by `scale`: logits in the hundreds, as a trained detector's
    are in the tens, so float32 rounding alone puts torch and onnxruntime more than 1e-4 apart in absolute terms."""
    model = small_detector()
    with torch.no_grad():
        for head in model.head.cls_heads:
            head[-1].weight.mul_(scale)
            head[-1].bias.mul_(scale)
    return model


def test_parity_is_relative_to_scale_and_judged_by_detections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, meta = _confident_detector(), detector_meta(input_size=(128, 128))
    path = export_onnx(model, tmp_path / "det.onnx", meta)
    report = parity_check(model, make_session(path, num_threads=1), input_size=(128, 128), thresholds=(0.3, 0.01))
    assert report.scale["cls_logits"] > 50, report.format()
    assert report.max_diff > 1e-4, "precondition: the old absolute tolerance would reject this export"
    assert report.ok(), report.format()
    assert all(d["reference"] > 10 and d["matched"] == d["reference"] for d in report.detections), report.format()
    ckpt = save_checkpoint(tmp_path / "det.ckpt", model, meta)
    assert main(["export", "--weights", str(ckpt), "--format", "onnx"]) == 0
    assert "parity OK" in capsys.readouterr().out


def test_parity_catches_a_moved_box_and_a_changed_label() -> None:
    from mobilevision.export.onnx import compare_outputs
    from mobilevision.tasks.table import get_task

    def compare_runs(reference: list, other: list, **kwargs):  # noqa: ANN202 - the detection task's comparison
        return compare_outputs(get_task("detection"), reference, other, source=model, **kwargs)

    model = small_detector()
    images = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        raw, anchors = model.forward_raw(images)
    reference = [raw["cls_logits"], raw["bbox_regression"], anchors]
    same = compare_runs(reference, [t.clone() for t in reference], input_size=(128, 128), thresholds=(0.3,))
    assert same.ok() and same.detections[0]["reference"] > 0
    best = int(raw["cls_logits"][0].softmax(-1)[:, 1:].max(-1).values.argmax())
    moved = [t.clone() for t in reference]
    moved[1][0, best, :2] += 0.5  # the best box's centre moves by about 5% of its default box
    assert not compare_runs(reference, moved, input_size=(128, 128), thresholds=(0.3,)).ok()
    relabelled = [t.clone() for t in reference]
    relabelled[0][0, best] = relabelled[0][0, best].flip(0)  # swaps background/last and the foreground classes
    report = compare_runs(reference, relabelled, input_size=(128, 128), thresholds=(0.3,))
    assert not report.detections_identical and report.max_relative_diff > 1e-4, report.format()
