"""Serving the joint model: the Predictor adapter, ONNX export and parity, and `predict` + `evaluate segmentation`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilevision.benchmarks.images import photo_like_images
from mobilevision.checkpoint import save_checkpoint
from mobilevision.cli import main
from mobilevision.errors import UserError
from mobilevision.export.onnx import export_onnx, make_session, parity_check, read_metadata
from mobilevision.inference.draw import write_image
from mobilevision.inference.predictor import Predictor
from mobilevision.tasks.multitask.inference import compare_masks
from mobilevision.tasks.segmentation.masks import read_index_mask
from tests.inference.models_for_tests import multitask_meta, small_multitask


@pytest.fixture(scope="module")
def joint_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "joint.ckpt", small_multitask(), multitask_meta())


@pytest.fixture(scope="module")
def joint_onnx(joint_ckpt: Path) -> Path:
    from mobilevision.checkpoint import load_checkpoint

    model, meta = load_checkpoint(joint_ckpt)
    return export_onnx(model, joint_ckpt.with_suffix(".onnx"), meta)


def _image(seed: int = 3, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    return photo_like_images(1, size, seed=seed)[0]


def test_checkpoint_gives_boxes_names_and_a_mask_at_the_image_size(joint_ckpt: Path) -> None:
    predictor = Predictor(joint_ckpt)
    assert predictor.task == "multitask" and predictor.input_size == (128, 128)
    result = predictor(_image())
    assert result["mask"].shape == (120, 160) and result["mask"].dtype == np.uint8
    assert set(np.unique(result["mask"])) == {0, 1, 2}, "the test model's mask has all three classes"
    assert len(result["scores"]) > 0 and (result["scores"] > 0.3).all()
    assert result["boxes"][:, 2].max() > 128, "boxes are scaled back to the 160-pixel-wide image"
    for label, category, name in zip(result["labels"], result["category_ids"], result["names"]):
        assert category == 10 * label and name == f"thing{label}"


def test_torch_and_onnxruntime_give_the_same_boxes_and_masks(joint_ckpt: Path, joint_onnx: Path) -> None:
    image = _image(seed=5, size=(150, 110))
    results = [
        Predictor(joint_ckpt, optimize=False)(image),
        Predictor(joint_ckpt, backend="onnxruntime")(image),
        Predictor(joint_onnx)(image),
    ]
    for other in results[1:]:
        assert np.array_equal(results[0]["labels"], other["labels"])
        assert np.allclose(results[0]["boxes"], other["boxes"], atol=1e-2)
        assert np.allclose(results[0]["scores"], other["scores"], atol=1e-4)
        assert (results[0]["mask"] == other["mask"]).mean() > 0.999


def test_mask_is_the_models_own_argmax_resized() -> None:
    """At the input size, the adapter's mask is `MultiTaskModel.forward`'s (the logits' argmax); its boxes are the
    model's above the threshold."""
    model = small_multitask()
    model.score_threshold = 0.3
    image = _image(seed=7, size=(128, 128))
    with torch.no_grad():
        reference = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    result = Predictor(model, optimize=False, input_size=(128, 128))(image)
    assert np.array_equal(result["mask"], reference["mask"].numpy())
    assert len(result["boxes"]) == len(reference["boxes"])


def test_onnx_metadata_carries_both_label_spaces(joint_onnx: Path) -> None:
    meta, extra = read_metadata(joint_onnx)
    assert meta.task == "multitask"
    assert meta.class_names == ["background", "thing1", "thing2", "thing3"]
    assert meta.mask_class_names == ["background", "region1", "region2"]
    assert "mobilevision.postprocess" in extra
    session = make_session(joint_onnx)
    assert [o.name for o in session.get_outputs()] == ["cls_logits", "bbox_regression", "anchors", "mask_logits"]
    assert Predictor(joint_onnx).adapter.classes()["mask_class_names"] == meta.mask_class_names


def test_export_parity_covers_detections_and_masks(
    joint_ckpt: Path, joint_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mobilevision.checkpoint import load_checkpoint

    model, _ = load_checkpoint(joint_ckpt)
    report = parity_check(model, make_session(joint_onnx), input_size=(128, 128), thresholds=(0.3, 0.01))
    assert set(report.max_abs_diff) == {"cls_logits", "bbox_regression", "anchors", "mask_logits"}
    rows = {row["threshold"]: row for row in report.detections}
    assert rows[0.3]["reference"] > 0 and rows["mask"]["pixels"] == 3 * 128 * 128
    assert report.ok(), report.format()
    # The command: the same check printed, the masks' line included.
    assert main(["export", "--weights", str(joint_ckpt), "--output", str(joint_ckpt.with_name("cli.onnx"))]) == 0
    out = capsys.readouterr().out
    assert "mask_logits: max |diff|" in out and "masks:" in out and "parity OK" in out


def test_mask_comparison_catches_a_changed_region() -> None:
    logits = torch.randn(2, 3, 16, 16) * 5
    assert compare_masks(logits, logits + 1e-6)["identical"]
    changed = logits.clone()
    changed[0, :, :4, :4] = 0
    changed[0, 1, :4, :4] = 100.0  # class 1 now wins clearly in a 4x4 corner
    row = compare_masks(logits, changed)
    assert not row["identical"] and row["pixels"] - row["agreeing"] > 0


def test_segmentation_options_are_refused(joint_ckpt: Path) -> None:
    with pytest.raises(UserError, match="output stride"):
        Predictor(joint_ckpt, output_stride=8)
    with pytest.raises(UserError, match="multi_scale_flip"):
        Predictor(joint_ckpt, multi_scale_flip=True)


def test_predict_writes_all_four_outputs_and_evaluate_reads_the_masks(
    tmp_path: Path, joint_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(2):
        write_image(tmp_path / "images" / f"{10 + i}.png", _image(seed=i, size=(90, 120)))
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--weights",
                str(joint_ckpt),
                "--source",
                str(tmp_path / "images"),
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "4 classes + 3 mask classes" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["10.jpg", "11.jpg"]
    classes = json.loads((out / "classes.json").read_text())
    assert classes["task"] == "multitask" and classes["category_ids"] == [0, 10, 20, 30]
    assert classes["mask_class_names"] == ["background", "region1", "region2"]
    results = json.loads((out / "predictions.json").read_text())
    assert (
        results and {r["image_id"] for r in results} <= {10, 11} and {r["category_id"] for r in results} <= {10, 20, 30}
    )
    assert [i["id"] for i in json.loads((out / "images.json").read_text())] == [10, 11]
    expected = Predictor(joint_ckpt)(_image(seed=0, size=(90, 120)))["mask"]
    assert np.array_equal(read_index_mask(out / "masks" / "10.png"), expected)
    # evaluate segmentation reads the masks, in the masks' label space (3 classes, not the detector's 4).
    capsys.readouterr()
    assert (
        main(["evaluate", "segmentation", "--gt", str(out / "masks"), "--predictions", str(out / "masks"), "--json"])
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert scores["miou"] == pytest.approx(1.0) and len(scores["iou_per_class"]) == 3


def test_drawn_image_has_the_overlay_and_the_boxes() -> None:
    predictor = Predictor(small_multitask(), meta=multitask_meta(), input_size=(128, 128))
    image = _image(seed=2, size=(128, 128))
    result = predictor(image)
    frame = predictor.adapter.draw(image, result, still=False)
    assert frame.shape == image.shape
    from mobilevision.inference.draw import draw_detections, overlay_mask

    overlay = overlay_mask(image, result["mask"])
    assert not np.array_equal(overlay, image) and not np.array_equal(frame, overlay)
    assert np.array_equal(frame, draw_detections(overlay, result))
    still = predictor.adapter.draw(image, result)
    assert still.shape[0] > image.shape[0], "a legend of the mask's classes below still images"


def test_predict_on_a_video_writes_the_annotated_video_and_results(tmp_path: Path, joint_ckpt: Path) -> None:
    import cv2

    from tests.inference.test_sources import write_video

    write_video(tmp_path / "clip.avi", frames=4, size=(48, 64), fps=10.0)
    assert (
        main(
            [
                "predict",
                "--weights",
                str(joint_ckpt),
                "--source",
                str(tmp_path / "clip.avi"),
                "--output",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
        == 0
    )
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_annotated.avi"))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 4
    assert {r["image_id"] for r in json.loads((tmp_path / "out" / "predictions.json").read_text())} <= set(range(4))


def test_int8_export_of_the_joint_graph(tmp_path: Path, joint_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, image in enumerate(photo_like_images(3, (128, 128), seed=9)):
        write_image(tmp_path / "calibration" / f"{i}.png", image)
    output = tmp_path / "joint.onnx"
    assert (
        main(
            [
                "export",
                "--weights",
                str(joint_ckpt),
                "--output",
                str(output),
                "--int8",
                "--calibration",
                str(tmp_path / "calibration"),
            ]
        )
        == 0
    )
    assert "masks:" in capsys.readouterr().out.split("int8 check")[1]
    meta, _ = read_metadata(output.with_suffix(".int8.onnx"))
    assert meta.mask_class_names == ["background", "region1", "region2"]
    result = Predictor(output.with_suffix(".int8.onnx"))(_image())
    assert result["mask"].shape == (120, 160) and len(result["scores"]) > 0
