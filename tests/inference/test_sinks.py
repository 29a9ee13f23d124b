from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from mobilevision.inference.predictor import Predictor
from mobilevision.inference.sinks import JsonArraySink, VideoSink, predict_source
from mobilevision.inference.sources import open_source
from tests.inference.models_for_tests import random_image, small_detector
from tests.inference.test_sources import FakeCapture


def _frames(path: Path) -> int:
    capture, n = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        n += 1
    return n


def test_video_sink_is_atomic_and_drops_empty_videos(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "a.mp4", fps=10, frame_size=(64, 48))
    assert not (tmp_path / "a.mp4").exists(), "nothing at the target before close()"
    for i in range(3):
        sink.write(random_image(48, 64, seed=i))
    sink.write(random_image(30, 30))  # another size is resized to the video's
    assert sink.close() == tmp_path / "a.mp4" and _frames(tmp_path / "a.mp4") == 4
    empty = VideoSink(tmp_path / "b.mp4", fps=10, frame_size=(64, 48))
    assert empty.close() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_json_array_sink(tmp_path: Path) -> None:
    sink = JsonArraySink(tmp_path / "r.json")
    for i in range(3):
        sink.add({"i": i})
    sink.close()
    assert json.loads((tmp_path / "r.json").read_text()) == [{"i": 0}, {"i": 1}, {"i": 2}]
    empty = JsonArraySink(tmp_path / "e.json")
    empty.close()
    assert json.loads((tmp_path / "e.json").read_text()) == []


def test_stalled_camera_finalises_the_outputs(tmp_path: Path) -> None:
    capture = FakeCapture(frames=100, stall_after=5)
    source = open_source(0, timeout=0.3, capture_factory=lambda target, timeout: capture)
    predictor = Predictor(small_detector(), input_size=(96, 96))
    summary = predict_source(predictor, source, tmp_path, progress=False)
    capture.unblock.set()
    assert summary.stalled and summary.exit_code == 1 and summary.frames == 5
    assert "stalled" in summary.format()
    assert _frames(tmp_path / "camera0_annotated.mp4") == 5
    assert json.loads((tmp_path / "predictions.json").read_text()) is not None


class _InterruptedPredictor:
    """Wraps a predictor and raises KeyboardInterrupt (Ctrl-C) at the fourth frame."""

    def __init__(self, inner: Predictor) -> None:
        self.inner, self.task, self.adapter, self.calls = inner, inner.task, inner.adapter, 0

    def predict_batch(self, images: list[np.ndarray]) -> list[dict]:
        self.calls += 1
        if self.calls == 4:
            raise KeyboardInterrupt
        return self.inner.predict_batch(images)


def test_ctrl_c_finalises_the_video(tmp_path: Path) -> None:
    source = open_source("rtsp://x", capture_factory=lambda target, timeout: FakeCapture(frames=50))
    predictor = _InterruptedPredictor(Predictor(small_detector(), input_size=(96, 96)))
    summary = predict_source(predictor, source, tmp_path, progress=False)
    assert summary.interrupted and summary.exit_code == 130 and summary.frames == 3
    assert _frames(tmp_path / "stream_annotated.mp4") == 3
