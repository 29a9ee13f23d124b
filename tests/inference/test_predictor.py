from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mobilevision.checkpoint import save_checkpoint
from mobilevision.errors import UserError
from mobilevision.inference.predictor import Predictor
from tests.inference.models_for_tests import (
    detector_meta,
    random_image,
    segmenter_meta,
    small_detector,
    small_segmenter,
)


def _check_detection(result: dict, h: int, w: int) -> None:
    n = len(result["boxes"])
    assert result["boxes"].shape == (n, 4) and result["boxes"].dtype == np.float32
    assert result["scores"].shape == (n,) and result["labels"].dtype == np.int64
    assert len(result["names"]) == n and result["category_ids"].shape == (n,)
    if n:
        assert (result["boxes"][:, 0::2] >= 0).all() and (result["boxes"][:, 0::2] <= w).all()
        assert (result["boxes"][:, 1::2] >= 0).all() and (result["boxes"][:, 1::2] <= h).all()
        assert (result["scores"] > 0.3).all() and np.all(np.diff(result["scores"]) <= 0)


def test_detection_on_an_array_in_image_pixels() -> None:
    predictor = Predictor(small_detector(), input_size=(160, 160))
    result = predictor(random_image(240, 200))
    _check_detection(result, 240, 200)
    assert len(result["boxes"]) > 0, "the forced class bias should give detections"
    assert set(result["names"]) <= {"class_1", "class_2", "class_3"}
    # A box scaled back to the image: some box must extend beyond the 160-pixel network input.
    assert result["boxes"][:, 3].max() > 160


def test_paths_and_lists(tmp_path: Path) -> None:
    image = random_image(100, 140)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    predictor = Predictor(small_detector(), input_size=(128, 128), batch_size=2)
    from_path = predictor(tmp_path / "a.png")
    from_array = predictor(image)
    assert np.allclose(from_path["boxes"], from_array["boxes"])
    results = predictor([image, str(tmp_path / "a.png"), random_image(60, 90, seed=3)])
    assert isinstance(results, list) and len(results) == 3
    assert np.allclose(results[0]["boxes"], from_array["boxes"], atol=1e-3)
    _check_detection(results[2], 60, 90)


def test_checkpoint_names_and_category_ids(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta())
    predictor = Predictor(path)
    assert predictor.input_size == (160, 160)
    result = predictor(random_image())
    assert len(result["labels"])
    for label, category, name in zip(result["labels"], result["category_ids"], result["names"]):
        assert category == 10 * label and name == f"thing{label}"


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backends_agree_with_the_unoptimised_model(backend: str) -> None:
    model = small_detector()
    reference = Predictor(model, optimize=False, input_size=(128, 128))(random_image())
    result = Predictor(model, backend=backend, input_size=(128, 128))(random_image())
    assert np.array_equal(reference["labels"], result["labels"])
    assert np.allclose(reference["boxes"], result["boxes"], atol=1e-2)
    assert np.allclose(reference["scores"], result["scores"], atol=1e-4)


def test_matches_the_detector_reference_path() -> None:
    # Predictor (threshold first, bounded) == Detector.forward (per-class top-k, threshold, NMS) at the input size.
    model = small_detector()
    model.score_threshold = 0.3
    image = random_image(128, 128)
    with torch.no_grad():
        reference = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    result = Predictor(model, optimize=False, input_size=(128, 128))(image)
    order = np.lexsort((-reference["scores"].numpy(), reference["labels"].numpy()))
    mine = np.lexsort((-result["scores"], result["labels"]))
    assert np.array_equal(reference["labels"].numpy()[order], result["labels"][mine])
    assert np.allclose(reference["boxes"].numpy()[order], result["boxes"][mine], atol=1e-3)


def test_segmentation_mask_at_the_image_size(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta())
    predictor = Predictor(path)
    result = predictor(random_image(90, 130))
    assert result["mask"].shape == (90, 130) and result["mask"].dtype == np.uint8
    assert result["mask"].max() < 3
    onnx = Predictor(path, backend="onnxruntime")(random_image(90, 130))
    assert (onnx["mask"] == result["mask"]).mean() > 0.999


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    predictor = Predictor(small_detector(force=False), input_size=(96, 96))
    with pytest.raises(UserError, match="notes.txt"):
        predictor(tmp_path / "notes.txt")


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 5), np.uint8)])
def test_bad_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=str(bad.shape[-1]) if bad.dtype == np.uint8 else "float32"):
        Predictor(small_detector(force=False), input_size=(96, 96))(bad)


def test_grey_and_rgba_arrays_are_accepted() -> None:
    predictor = Predictor(small_detector(force=False), input_size=(96, 96))
    predictor(random_image()[..., 0])
    predictor(np.dstack([random_image(), np.full((120, 160), 255, np.uint8)]))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="backend"):
        Predictor(small_detector(), backend="tensorrt")
    with pytest.raises(ValueError, match="score_threshold"):
        Predictor(small_detector(), score_threshold=1.5)


def test_stream_over_a_video_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for i in range(12):
        writer.write(random_image(64, 96, seed=i))
    writer.release()
    predictor = Predictor(small_detector(), input_size=(96, 96))
    seen = []
    for index, frame, result in predictor.stream(path):
        assert frame.shape == (64, 96, 3)
        _check_detection(result, 64, 96)
        seen.append(index)
    assert seen == list(range(12))
