"""VideoSink's codec choice: H.264 where this OpenCV build writes it, MPEG-4 Part 2 otherwise, the input's container
kept when it can be written; probing for a codec the build lacks prints nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from mobilevision.inference import sinks
from mobilevision.inference.sinks import VIDEO_CODECS, VideoSink, can_write, video_codec, video_container
from tests.inference.models_for_tests import random_image

# FourCC tags as written and as read back name the same codec in several ways.
_FAMILY = {
    "avc1": "h264",
    "h264": "h264",
    "mp4v": "mpeg4",
    "xvid": "mpeg4",
    "fmp4": "mpeg4",
    "mjpg": "mjpeg",
    "vp80": "vp8",
    "vp90": "vp9",
}


def _read(path: Path) -> tuple[int, str]:
    capture = cv2.VideoCapture(str(path))
    tag = int(capture.get(cv2.CAP_PROP_FOURCC))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, tag.to_bytes(4, "little").decode("latin-1")


@pytest.mark.parametrize("container", sorted(VIDEO_CODECS))
def test_each_writable_container_round_trips(tmp_path: Path, container: str) -> None:
    codec = video_codec(container)
    if codec is None:
        pytest.skip(f"this OpenCV build writes no {container} video")
    sink = VideoSink(tmp_path / f"a{container}", fps=10, frame_size=(64, 48))
    assert sink.fourcc == codec
    for i in range(3):
        sink.write(random_image(48, 64, seed=i))
    assert sink.close() == tmp_path / f"a{container}"
    frames, tag = _read(tmp_path / f"a{container}")
    assert frames == 3
    assert _FAMILY.get(tag.lower(), tag.lower()) == _FAMILY[codec.lower()], (tag, codec)


def test_h264_is_chosen_exactly_when_the_build_writes_it() -> None:
    assert (video_codec(".mp4") == "avc1") == can_write(".mp4", "avc1")
    assert video_codec(".mp4") in ("avc1", "mp4v")  # mp4v is in every build


def test_h264_preferred_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sinks._WRITABLE, (".mp4", "avc1"), True)
    assert video_codec(".mp4") == "avc1"
    monkeypatch.setitem(sinks._WRITABLE, (".mp4", "avc1"), False)
    assert video_codec(".mp4") == "mp4v"


def test_the_input_container_is_kept_when_writable() -> None:
    assert video_container("clip.mkv") == (".mkv" if video_codec(".mkv") else ".mp4")
    assert video_container("clip.AVI") == (".avi" if video_codec(".avi") else ".mp4")
    assert video_container("clip.flv") == ".mp4"  # no writer for it here: the default container
    assert video_container(None) == ".mp4" and video_container("rtsp://camera/stream") == ".mp4"


def test_probing_prints_nothing(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "_WRITABLE", {})  # probe again, in this test's captured descriptors
    for container, codecs in VIDEO_CODECS.items():
        for codec in codecs:
            can_write(container, codec)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
