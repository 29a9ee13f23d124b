"""Where frames come from: an image, a folder, a glob, a video file, a camera index or a stream URL.

`open_source(spec)` returns a `Source`: an iterable of `Frame`s (RGB uint8 images), one at a time, so memory does not
grow with the length of a video. Video, camera and URL frames are read by a background thread into a bounded queue
(decoding overlaps inference; at most `QUEUE_FRAMES` frames wait), and a source that produces no frame for `timeout`
seconds raises `SourceTimeout` instead of hanging.

Tests replace OpenCV's capture by passing `capture_factory` (anything with `isOpened`, `read`, `get`, `release`).
"""

from __future__ import annotations

import glob
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from mobilevision.data.decode import IMAGE_SUFFIXES as DATASET_IMAGE_SUFFIXES
from mobilevision.data.decode import BadSample, read_image, read_image_in_frame
from mobilevision.data.report import DataWarning
from mobilevision.errors import UserError

# What `predict` reads from a folder: the dataset formats, and a few more that OpenCV decodes.
IMAGE_SUFFIXES = frozenset({*DATASET_IMAGE_SUFFIXES, ".gif", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"})
QUEUE_FRAMES = 4
DEFAULT_TIMEOUT = 10.0


class SourceTimeout(UserError):
    """A video, camera or stream produced no frame within the timeout."""


class Capture(Protocol):
    """The part of `cv2.VideoCapture` we use."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[str | int, float], Capture]


def opencv_capture(target: str | int, timeout: float) -> Capture:
    """`cv2.VideoCapture`, with FFmpeg's own open/read timeouts for network streams (a second line of defence)."""
    if isinstance(target, str) and "://" in target:
        ms = int(timeout * 1000)
        return cv2.VideoCapture(
            target, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )
    return cv2.VideoCapture(target)


@dataclass
class Frame:
    """One image to predict on: `image` RGB uint8 (H, W, 3); `name` is unique within the source (no suffix)."""

    index: int
    image: np.ndarray
    name: str
    path: Path | None = None


@dataclass
class Source:
    """Base of the sources: metadata plus what happened while reading (`skipped`, `ended_early`)."""

    kind: str  # "images", "video", "camera" or "stream"
    description: str
    fps: float | None = None
    frame_size: tuple[int, int] | None = None  # (width, height)
    length: int | None = None  # frames or images, when known
    frames_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    ended_early: str | None = None

    @property
    def is_video(self) -> bool:
        return self.kind != "images"

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Release the capture (idempotent)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ImageSource(Source):
    """Image files, decoded one at a time with `read_image`. With `strict` (a single file named by the user) an
    unreadable file raises `UserError` naming it; otherwise it is skipped with a `DataWarning` and recorded."""

    paths: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    strict: bool = False
    preloaded: np.ndarray | None = None  # a single file is decoded at open time, so a bad one fails before any work
    image_ids: dict[str, int] | None = None  # name -> the dataset's image id, when the images come from its list
    # name -> (width, height) the dataset's annotation states: images are read in that frame, as its reader reads
    # them (an EXIF orientation that contradicts it is left unapplied; see `read_image_in_frame`).
    stated_sizes: dict[str, tuple[int, int]] | None = None

    def exclude(self, folder: str | os.PathLike[str]) -> None:
        """Drop files inside `folder` (the output folder, when it lies inside the source folder)."""
        root = Path(folder).resolve()
        kept = [(p, n) for p, n in zip(self.paths, self.names) if not p.resolve().is_relative_to(root)]
        self.paths, self.names = [p for p, _ in kept], [n for _, n in kept]
        self.length = len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for path, name in zip(self.paths, self.names):
            try:
                if self.preloaded is not None:
                    image = self.preloaded
                else:
                    stated = self.stated_sizes.get(name) if self.stated_sizes else None
                    image = read_image_in_frame(path, stated)[0]
            except BadSample as error:
                if self.strict:
                    raise UserError(f"{path}: {error.reason}") from None
                warnings.warn(f"{path}: {error.reason}, skipped", DataWarning, stacklevel=2)
                self.skipped.append({"file": str(path), "reason": error.reason})
                continue
            yield Frame(index=self.frames_read, image=image, name=name, path=path)
            self.frames_read += 1


@dataclass
class CaptureSource(Source):
    """A video file, camera or stream read by a background thread into a bounded queue."""

    target: str | int = 0
    factory: CaptureFactory = opencv_capture
    timeout: float = DEFAULT_TIMEOUT
    stem: str = "frame"
    _capture: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def open(self) -> CaptureSource:
        capture = self.factory(self.target, self.timeout)
        if capture is None or not capture.isOpened():
            raise UserError(
                f"{self.description}: cannot open (not a video OpenCV can read, or the device/URL is unavailable)"
            )
        self._capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else None
        width, height = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )
        self.frame_size = (width, height) if width > 0 and height > 0 else None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = count if self.kind == "video" and count > 0 else None
        return self

    def _reader(self, frames: queue.Queue) -> None:
        # Runs in the background: OpenCV releases the GIL while decoding, so this overlaps with inference.
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    break
                self._put(frames, ("frame", frame))
            self._put(frames, ("end", None))
        except Exception as error:  # noqa: BLE001 - any decoder failure ends the stream, reported by the consumer
            self._put(frames, ("error", f"{type(error).__name__}: {error}"))

    def _put(self, frames: queue.Queue, item: tuple[str, Any]) -> None:
        while not self._stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None:
            self.open()
        frames: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._stop.clear()
        self._thread = threading.Thread(target=self._reader, args=(frames,), daemon=True, name="mobilevision-capture")
        self._thread.start()
        try:
            while True:
                try:
                    kind, payload = frames.get(timeout=self.timeout)
                except queue.Empty:
                    self.ended_early = f"no frame for {self.timeout:g} s after {self.frames_read} frames (stalled)"
                    raise SourceTimeout(f"{self.description}: {self.ended_early}") from None
                if kind == "end":
                    if self.length is not None and self.frames_read < self.length:
                        self.ended_early = (
                            f"reading stopped after {self.frames_read} of {self.length} frames "
                            "(file cut short or corrupt)"
                        )
                    return
                if kind == "error":
                    self.ended_early = f"reading failed after {self.frames_read} frames ({payload})"
                    return
                bgr = payload
                if bgr.ndim == 2:
                    image = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                elif bgr.shape[2] == 4:
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
                else:
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if self.frame_size is None:
                    self.frame_size = (image.shape[1], image.shape[0])
                yield Frame(index=self.frames_read, image=image, name=f"{self.stem}_{self.frames_read:06d}")
                self.frames_read += 1
        finally:
            self._stop.set()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=1.0)
        # A reader still blocked inside read() (a stalled device) keeps the capture; releasing it under the reader's
        # feet can crash some backends, so it is left to the daemon thread and the process exit.
        if self._capture is not None and (thread is None or not thread.is_alive()):
            self._capture.release()
            self._capture = None


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def unique_names(paths: list[Path], root: Path | None) -> list[str]:
    """Output names for `paths`: relative to `root` (folders joined by `__`) or stems, made unique with `_N`."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for path in paths:
        base = path.relative_to(root).with_suffix("").as_posix() if root else path.stem
        base = base.replace("/", "__")
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.append(base if count == 0 else f"{base}_{count}")
    return names


def open_source(
    spec: str | int | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    capture_factory: CaptureFactory | None = None,
) -> Source:
    """Resolve a user's `--source` into a Source.

    - an int or a string of digits: camera index;  a string with "://": stream URL (rtsp, http, ...);
    - a folder: its images (recursively, sorted);  a glob pattern: the image files it matches (sorted);
    - a file: a video when its suffix is a video suffix, else an image (an unreadable image raises `UserError`).

    Raises:
        UserError: nothing matches, or a capture cannot be opened.
    """
    factory = capture_factory or opencv_capture
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        return CaptureSource(
            kind="camera",
            description=f"camera {index}",
            target=index,
            factory=factory,
            timeout=timeout,
            stem=f"camera{index}",
        ).open()
    text = os.fspath(spec)
    if "://" in text:
        return CaptureSource(
            kind="stream", description=text, target=text, factory=factory, timeout=timeout, stem="stream"
        ).open()
    path = Path(text)
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UserError(f"{path}: folder holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageSource(
            kind="images", description=str(path), paths=paths, names=unique_names(paths, path), length=len(paths)
        )
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return CaptureSource(
                kind="video", description=str(path), target=str(path), factory=factory, timeout=timeout, stem=path.stem
            ).open()
        try:
            image = read_image(path)
        except BadSample as error:
            raise UserError(f"{path}: {error.reason}") from None
        return ImageSource(
            kind="images",
            description=str(path),
            paths=[path],
            names=[path.stem],
            length=1,
            strict=True,
            preloaded=image,
        )
    if _is_glob(text):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise UserError(f"{text}: the pattern matches no image files ({len(paths)} files of other kinds)")
        return ImageSource(
            kind="images", description=text, paths=images, names=unique_names(images, None), length=len(images)
        )
    raise UserError(f"{text}: no such file or folder, and not a glob pattern, camera index or URL")
