"""int8 export: onnxruntime's static quantization (QDQ, per-channel weights) of our graphs, metadata carried over,
run by Predictor, and its outputs close to fp32's within the tolerances stated here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import onnx
import pytest
import torch

from mobilevision.benchmarks.images import photo_like_images
from mobilevision.checkpoint import save_checkpoint
from mobilevision.cli import main
from mobilevision.export.onnx import read_metadata
from mobilevision.export.quantize import QUANTIZATION_KEY, calibration_paths
from mobilevision.inference.predictor import Predictor
from mobilevision.tasks.detection.parity import match_detections
from tests.inference.models_for_tests import detector_meta, segmenter_meta, small_detector, small_segmenter

# Of the fp32 detections above 0.3, the share the int8 model must reproduce (same label, IoU >= 0.8).
DETECTION_AGREEMENT = 0.9
# Share of pixels whose int8 class equals the fp32 class.
PIXEL_AGREEMENT = 0.95


def _write_images(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(photo_like_images(count, size, seed=seed)):
        paths.append(folder / f"{i:03d}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def _confident_detector() -> torch.nn.Module:
    """Calibrated BatchNorm and class logits x5: scores spread from 0 to 1 as a trained detector's do."""
    model = small_detector()
    with torch.no_grad():
        for head in model.head.cls_heads:
            head[-1].weight.mul_(5.0)
            head[-1].bias.mul_(5.0)
    return model


def test_int8_detector_export_runs_and_agrees_with_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_images(tmp_path / "calibration", 16, (160, 200), seed=5)
    meta = detector_meta(input_size=(128, 128))
    ckpt = save_checkpoint(tmp_path / "det.ckpt", _confident_detector(), meta)
    assert (
        main(
            [
                "export",
                "--weights",
                str(ckpt),
                "--int8",
                "--calibration",
                str(tmp_path / "calibration"),
                "--calibration-images",
                "12",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "det.int8.onnx" in out and "int8 check" in out and "fp32 vs int8" in out and "DIFFERENT" not in out
    int8 = tmp_path / "det.int8.onnx"
    proto = onnx.load(str(int8))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weight_scales = [
        i for i in proto.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1
    ]
    assert weight_scales, "per-channel weights have one scale per output channel"
    loaded, metadata = read_metadata(int8)
    assert loaded == meta and "mobilevision.postprocess" in metadata
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props[QUANTIZATION_KEY])["calibration_images"] == 12

    fp32_predictor, int8_predictor = Predictor(tmp_path / "det.onnx"), Predictor(int8)
    total = matched = 0
    for image in photo_like_images(6, (180, 240), seed=11):
        a, b = fp32_predictor(image), int8_predictor(image)
        found, _ = match_detections(
            {k: torch.as_tensor(a[k]) for k in ("boxes", "labels")},
            {k: torch.as_tensor(b[k]) for k in ("boxes", "labels")},
            iou=0.8,
            pixels=0.0,
        )
        total, matched = total + len(found), matched + int(found.sum())
    assert total > 50, "precondition: the fp32 model detects things"
    assert matched / total >= DETECTION_AGREEMENT, f"{matched}/{total}"


def test_int8_segmenter_agrees_with_fp32(tmp_path: Path) -> None:
    from mobilevision.export.onnx import export_onnx
    from mobilevision.export.quantize import quantize_onnx

    calibration = _write_images(tmp_path / "calibration", 12, (96, 128), seed=2)
    fp32 = export_onnx(small_segmenter(), tmp_path / "seg.onnx", segmenter_meta(input_size=(96, 128)))
    int8 = quantize_onnx(fp32, tmp_path / "seg.int8.onnx", calibration)
    assert read_metadata(int8)[0] == read_metadata(fp32)[0]
    same = count = 0
    for image in photo_like_images(4, (96, 128), seed=8):
        a, b = Predictor(fp32)(image)["mask"], Predictor(int8)(image)["mask"]
        same, count = same + int((a == b).sum()), count + a.size
    assert same / count >= PIXEL_AGREEMENT, same / count


def test_calibration_folder_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilevision.errors import UserError

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        calibration_paths(tmp_path / "empty")
    with pytest.raises(UserError, match="not a folder"):
        calibration_paths(tmp_path / "missing")
    split = tmp_path / "split"
    paths = _write_images(split / "images", 3, (32, 32), seed=0)
    assert calibration_paths(split, limit=2) == paths[:2]
    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    assert main(["export", "--weights", str(ckpt), "--int8", "--calibration", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--weights", str(ckpt), "--int8"])


def test_keep_float_leaves_the_named_convolutions_unquantized(tmp_path: Path) -> None:
    from mobilevision.errors import UserError
    from mobilevision.export.onnx import export_onnx
    from mobilevision.export.quantize import quantize_onnx, resolve_keep_float

    calibration = _write_images(tmp_path / "calibration", 2, (64, 64), seed=3)
    fp32 = export_onnx(small_segmenter(), tmp_path / "seg.onnx", segmenter_meta(input_size=(64, 64)))
    graph = onnx.load(str(fp32))
    stem = [node.name for node in graph.graph.node if node.op_type == "Conv"][0]
    assert resolve_keep_float(graph, ["stem"]) == [stem]
    with pytest.raises(UserError, match="not a node"):
        resolve_keep_float(graph, ["no_such_layer"])
    int8 = quantize_onnx(fp32, tmp_path / "seg.int8.onnx", calibration, keep_float=["stem"])
    proto = onnx.load(str(int8))
    record = json.loads({p.key: p.value for p in proto.metadata_props}[QUANTIZATION_KEY])
    assert record["kept_float"] == [stem]
    # The kept stem's weights stay float (an initializer), the other convolutions' come through DequantizeLinear.
    producers = {out: node.op_type for node in proto.graph.node for out in node.output}
    convs = {node.name: producers.get(node.input[1]) for node in proto.graph.node if node.op_type == "Conv"}
    assert convs.pop(stem) is None
    assert convs and set(convs.values()) == {"DequantizeLinear"}, convs
