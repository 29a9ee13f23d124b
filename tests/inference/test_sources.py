from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilevision.data.report import DataWarning
from mobilevision.errors import UserError
from mobilevision.inference.listing import listed_images
from mobilevision.inference.sources import CaptureSource, ImageSource, SourceTimeout, open_source
from tests.inference.models_for_tests import random_image


def _write_image(path: Path, seed: int = 0, size: tuple[int, int] = (40, 60)) -> np.ndarray:
    image = random_image(*size, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return image


def write_video(path: Path, frames: int = 10, size: tuple[int, int] = (48, 64), fps: float = 15.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(random_image(*size, seed=i))  # noise: frame data, not headers, dominates the file
    writer.release()


class FakeCapture:
    """A stand-in for cv2.VideoCapture: `frames` BGR frames, then end (or a hang when `stall`)."""

    def __init__(self, frames: int = 5, *, stall_after: int | None = None, opened: bool = True) -> None:
        self.frames, self.stall_after, self.opened = frames, stall_after, opened
        self.read_count, self.released = 0, False
        self.unblock = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.stall_after is not None and self.read_count >= self.stall_after:
            self.unblock.wait(5.0)  # a device that stops answering
            return False, None
        if self.read_count >= self.frames:
            return False, None
        self.read_count += 1
        frame = np.zeros((24, 32, 3), np.uint8)
        frame[..., 0] = 255  # blue in BGR
        return True, frame

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_WIDTH: 32, cv2.CAP_PROP_FRAME_HEIGHT: 24}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


def test_single_image(tmp_path: Path) -> None:
    image = _write_image(tmp_path / "a.png")
    source = open_source(str(tmp_path / "a.png"))
    frames = list(source)
    assert source.kind == "images" and len(frames) == 1
    assert np.array_equal(frames[0].image, image) and frames[0].name == "a"


def test_single_non_image_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="notes.txt"):
        open_source(tmp_path / "notes.txt")


def test_folder_is_recursive_sorted_and_skips_bad_files(tmp_path: Path) -> None:
    _write_image(tmp_path / "b.png", 1)
    _write_image(tmp_path / "a.jpg", 2)
    _write_image(tmp_path / "sub" / "a.png", 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "readme.md").write_text("ignored: not an image suffix")
    source = open_source(tmp_path)
    assert isinstance(source, ImageSource) and source.length == 4
    with pytest.warns(DataWarning, match="broken.png"):
        frames = list(source)
    assert [f.name for f in frames] == ["a", "b", "sub__a"]
    assert len(source.skipped) == 1 and source.skipped[0]["file"].endswith("broken.png")


def test_folder_exclude(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png")
    _write_image(tmp_path / "out" / "a.png")
    source = open_source(tmp_path)
    assert isinstance(source, ImageSource)
    source.exclude(tmp_path / "out")
    assert [f.name for f in source] == ["a"]


def test_glob(tmp_path: Path) -> None:
    for i in range(3):
        _write_image(tmp_path / f"img{i}.png", i)
    _write_image(tmp_path / "other.jpg")
    source = open_source(str(tmp_path / "img*.png"))
    assert [f.name for f in source] == ["img0", "img1", "img2"]
    with pytest.raises(UserError, match="matches no image"):
        open_source(str(tmp_path / "*.gif"))


def test_nothing_there(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        open_source(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        open_source(tmp_path / "empty")


def test_video_file(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.avi", frames=10)
    source = open_source(tmp_path / "clip.avi")
    assert isinstance(source, CaptureSource) and source.kind == "video"
    assert source.fps == pytest.approx(15.0) and source.frame_size == (64, 48) and source.length == 10
    frames = list(source)
    assert [f.index for f in frames] == list(range(10)) and frames[3].name == "clip_000003"
    assert frames[0].image.shape == (48, 64, 3) and source.ended_early is None
    source.close()


def test_truncated_video_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.avi", frames=20)
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    source = open_source(tmp_path / "cut.avi")
    frames = list(source)
    assert 0 < len(frames) < 20
    assert source.ended_early and "cut short" in source.ended_early


def test_unreadable_video_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="fake.mp4"):
        open_source(tmp_path / "fake.mp4")


def test_camera_index_via_fake_capture() -> None:
    opened: list = []

    def factory(target, timeout):  # noqa: ANN001, ANN202
        opened.append(target)
        return FakeCapture(frames=4)

    source = open_source("0", capture_factory=factory)
    frames = list(source)
    source.close()
    assert opened == [0] and source.kind == "camera" and source.fps == 25.0
    assert len(frames) == 4 and frames[0].image[0, 0].tolist() == [0, 0, 255]  # BGR blue -> RGB blue


def test_url_via_fake_capture() -> None:
    capture = FakeCapture(frames=3)
    source = open_source("rtsp://camera.local/stream", capture_factory=lambda target, timeout: capture)
    assert source.kind == "stream"
    assert len(list(source)) == 3
    source.close()
    assert capture.released


def test_unopenable_stream() -> None:
    with pytest.raises(UserError, match="cannot open"):
        open_source("http://nowhere/x.mjpg", capture_factory=lambda t, s: FakeCapture(opened=False))


def test_stalled_source_times_out() -> None:
    capture = FakeCapture(frames=100, stall_after=2)
    source = open_source(3, timeout=0.3, capture_factory=lambda target, timeout: capture)
    got = []
    with pytest.raises(SourceTimeout, match="stalled"):
        for frame in source:
            got.append(frame.index)
    assert got == [0, 1]
    capture.unblock.set()
    source.close()


def test_split_list_images_stay_inside_the_folder_and_missing_ones_are_reported(tmp_path: Path) -> None:
    """`predict --split-list`: the ids' images (any of .jpg/.jpeg/.png); a path in the list counts by its stem, so
    it cannot lead out of the folder; a listed id without an image is reported when read."""
    folder = tmp_path / "JPEGImages"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), random_image(8, 8)[..., ::-1])
    cv2.imwrite(str(folder / "b.png"), random_image(8, 8)[..., ::-1])
    (tmp_path / "secret.jpg").write_bytes((folder / "a.jpg").read_bytes())
    split = tmp_path / "val.txt"
    split.write_text("a\nb\n../secret\n")
    source = listed_images(folder, split_list=split)
    assert source.names == ["a", "b", "secret"] and source.image_ids == {"a": 1, "b": 2, "secret": 3}
    assert source.paths[1].name == "b.png" and all(p.parent == folder for p in source.paths)
    with pytest.warns(DataWarning, match="secret"):
        frames = [frame.name for frame in source]
    assert frames == ["a", "b"] and source.skipped == [{"file": str(folder / "secret.jpg"), "reason": "file not found"}]
