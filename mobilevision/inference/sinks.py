"""Where predictions go: annotated images, an annotated video, COCO-results JSON, palette masks and overlays.

Every file is written atomically (temporary file, then rename). The video and the JSON are streamed to their
temporary files frame by frame, so memory stays flat on long videos, and they are finalised (writer released,
JSON closed, renamed into place) even when the input is cut short, stalls, or the user presses Ctrl-C.

`predict_source` is the loop behind `mobilevision predict` and the demo; `predict_video` is its one-call form for a
video file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from mobilevision.inference.draw import write_image
from mobilevision.inference.sources import (
    DEFAULT_TIMEOUT,
    CaptureFactory,
    ImageSource,
    Source,
    SourceTimeout,
    open_source,
)
from mobilevision.io import atomic_path, atomic_write_json

DEFAULT_FPS = 30.0  # for cameras and streams that report none
VIDEO_FOURCC = "mp4v"  # MPEG-4 Part 2: written by every OpenCV build, played by common players (the fallback)
# Codecs to try per container, best first: H.264 (`avc1`) plays everywhere (browsers included) and is ~2x smaller,
# but the pip OpenCV builds usually cannot encode it (no encoder library); MPEG-4 Part 2 always works in these
# containers. WebM takes only VP8/VP9.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v"),
    ".mkv": ("avc1", "mp4v"),
    ".avi": ("H264", "XVID", "MJPG"),
    ".webm": ("VP90", "VP80"),
}
_WRITABLE: dict[tuple[str, str], bool] = {}


@contextlib.contextmanager
def _native_stderr_silenced() -> Any:
    """Silence file descriptor 2 for the block: FFmpeg and OpenCV print a failed encoder probe's errors from C,
    past Python's sys.stderr (four lines per codec an OpenCV build lacks). Other threads' stderr is lost meanwhile,
    so it wraps only the probe (milliseconds, once per codec and container per process)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def can_write(container: str, fourcc: str) -> bool:
    """Whether this OpenCV build writes `fourcc` video in `container` (e.g. ".mp4"): probed once with a tiny file."""
    key = (container.lower(), fourcc)
    if key not in _WRITABLE:
        import tempfile

        with tempfile.TemporaryDirectory() as folder, _native_stderr_silenced():
            probe = Path(folder) / f"probe{container.lower()}"
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
            ok = writer.isOpened()
            if ok:
                writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.release()
            _WRITABLE[key] = ok and probe.is_file() and probe.stat().st_size > 0
    return _WRITABLE[key]


def video_codec(container: str) -> str | None:
    """The best codec this OpenCV build writes in `container` (`VIDEO_CODECS` order), None when it writes none."""
    return next((c for c in VIDEO_CODECS.get(container.lower(), ()) if can_write(container, c)), None)


def video_container(source: str | os.PathLike[str] | None) -> str:
    """The container (suffix) to write a video predicted from `source` in: the input's own when this build can
    write it (an .mkv stays .mkv, an .avi stays .avi), else ".mp4"."""
    suffix = Path(str(source)).suffix.lower() if source is not None else ""
    return suffix if suffix in VIDEO_CODECS and video_codec(suffix) is not None else ".mp4"


class VideoSink:
    """An atomic video writer: frames go to a temporary file next to `path`, renamed onto it by `close()`.

    Args:
        path: target; its suffix is the container (.mp4, .mkv, .mov, .avi, .webm; see `video_container`).
        fps: frames per second (the input's).
        frame_size: (width, height) (the input's); frames of another size are resized to it.
        fourcc: the codec; None picks the best this OpenCV build can write in the container (`video_codec`: H.264
            where available, MPEG-4 Part 2 otherwise). The codec used is `self.fourcc`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fps: float, frame_size: tuple[int, int], fourcc: str | None = None
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.frames = 0
        self.fourcc = fourcc or video_codec(self.path.suffix) or VIDEO_FOURCC
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.frame_size)
        if not self._writer.isOpened():
            self._stack.close()
            raise OSError(f"cannot open a {self.fourcc} video writer for {self.path}")

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.frame_size:
            rgb = cv2.resize(rgb, self.frame_size, interpolation=cv2.INTER_LINEAR)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finalise: release the writer (writes the container index) and rename into place. A video with no frame
        is not playable, so it is discarded. Returns the path written, or None."""
        if self._writer is None:
            return self.path if self.frames else None
        self._writer.release()
        self._writer = None
        if self.frames == 0:
            with contextlib.suppress(Exception):
                self._stack.__exit__(RuntimeError, RuntimeError("no frames"), None)  # removes the temporary file
            return None
        self._stack.close()
        return self.path


class JsonArraySink:
    """Writes a JSON array one element at a time to a temporary file; `close()` renames it onto `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.count = 0
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file: IO[str] | None = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
        self._file.write("[")

    def add(self, item: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(("\n" if self.count == 0 else ",\n") + json.dumps(item))
        self.count += 1

    def close(self) -> Path:
        if self._file is not None:
            self._file.write("\n]\n")
            self._file.flush()
            self._file = None
            self._stack.close()
        return self.path


def display_problem() -> str | None:
    """Why no window can be shown here, or None when one can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    try:
        cv2.namedWindow("mobilevision", cv2.WINDOW_NORMAL)
    except cv2.error:
        return (
            "this OpenCV build has no GUI support (opencv-python-headless, the build albumentations needs); "
            "install opencv-python in a separate environment to use --show"
        )
    return None


@dataclass
class PredictSummary:
    """What a run did: frames predicted, files written, and why it stopped early (if it did)."""

    source: str
    kind: str
    frames: int = 0
    seconds: float = 0.0
    detections: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ended_early: str | None = None
    interrupted: bool = False
    stalled: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.stalled or (self.kind == "images" and self.frames == 0):  # nothing readable is a failure
            return 1
        return 0

    def format(self) -> str:
        lines = [
            f"{self.source}: {self.frames} {'frames' if self.kind != 'images' else 'images'} in "
            f"{self.seconds:.1f} s ({self.fps:.1f} frames/s)"
        ]
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} unreadable files (first: {self.skipped[0]['file']}: "
                f"{self.skipped[0]['reason']})"
            )
        if self.ended_early:
            lines.append(
                f"input ended early: {self.ended_early}; the {self.frames} frames before were processed "
                "and the outputs finalised"
            )
        if self.interrupted:
            lines.append(f"interrupted after {self.frames} frames; the outputs were finalised")
        lines += [f"wrote {path}" for path in self.written]
        return "\n".join(lines)


def _image_ids(source: Source) -> dict[str, int]:
    # The dataset's own ids when the images come from its list (`predict --annotations`); else COCO-style file
    # names (000000397133.jpg) keep their numeric ids, and anything else is numbered 1..N.
    if isinstance(source, ImageSource) and source.image_ids is not None:
        return dict(source.image_ids)
    names = source.names if isinstance(source, ImageSource) else []
    if names and all(n.isdigit() for n in names) and len({int(n) for n in names}) == len(names):
        return {n: int(n) for n in names}
    return {n: i + 1 for i, n in enumerate(names)}


def predict_source(
    predictor: Any,
    source: Source,
    output_dir: str | os.PathLike[str],
    *,
    show: bool = False,
    progress: bool = True,
    log: Any = None,
) -> PredictSummary:
    """Run `predictor` over `source`, writing into `output_dir`:

    - images: the drawn image in `<adapter.drawn_folder>/<name>.jpg` (detection: `annotated/`; segmentation:
      `overlays/`, plus the palette mask `masks/<name>.png`);
    - video/camera/stream: `<stem>_<adapter.video_suffix>.mp4` at the input's fps and size (a video file keeps its
      own container, .mkv or .avi, when this OpenCV build writes it);
    - tasks with results files (detection): `predictions.json` (COCO results; image_id = frame index for video, the
      dataset's ids for images listed by `listing.listed_images(annotations=...)`) and, for images, `images.json` (COCO
      `images` entries: id, file_name, height, width);
    - `classes.json`: the model's class names (index = label) and, for detection, the dataset category ids, so
      `mobilevision evaluate` can name the classes;
    - the joint model (multitask) writes all of these: `annotated/` (boxes over the mask overlay), the palette
      masks, the COCO results, and `mask_class_names` beside the detector's names in classes.json.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # What gets drawn and written for each image is the task's (the Predictor's adapter, from the task table).
    adapter = predictor.adapter
    summary = PredictSummary(source=source.description, kind=source.kind)
    window = False
    if show:
        problem = display_problem()
        if problem:
            log(f"--show: cannot open a window: {problem}; writing the output files only")
        else:
            window = True
    ids = _image_ids(source)
    atomic_write_json(out / "classes.json", {"task": predictor.task, **adapter.classes()})
    image_entries: list[dict[str, Any]] = []
    video: VideoSink | None = None
    results_sink = JsonArraySink(out / "predictions.json") if adapter.writes_results else None
    stem = getattr(source, "stem", "video")
    from tqdm import tqdm

    bar = tqdm(
        total=source.length,
        unit="frame",
        desc="predict",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )
    start = time.perf_counter()
    try:
        for frame in source:
            result = predictor.predict_batch([frame.image])[0]
            # Still images may carry a legend below; video frames keep their size.
            drawn = adapter.draw(frame.image, result, still=not source.is_video)
            image_id = frame.index if source.is_video else ids.get(frame.name, frame.index + 1)
            if results_sink is not None:
                entries = adapter.results(result, image_id)
                summary.detections += len(entries)
                for entry in entries:
                    results_sink.add(entry)
            if source.is_video:
                if video is None:
                    size = source.frame_size or (frame.image.shape[1], frame.image.shape[0])
                    container = video_container(getattr(source, "target", None) if source.kind == "video" else None)
                    video = VideoSink(
                        out / f"{stem}_{adapter.video_suffix}{container}",
                        fps=source.fps or DEFAULT_FPS,
                        frame_size=size,
                    )
                video.write(drawn)
            else:
                write_image(out / adapter.drawn_folder / f"{frame.name}.jpg", drawn)
                saved = adapter.save(out, frame.name, result)
                if saved is not None:
                    summary.written.append(saved)
                if results_sink is not None:
                    image_entries.append(
                        {
                            "id": image_id,
                            "file_name": str(frame.path),
                            "height": frame.image.shape[0],
                            "width": frame.image.shape[1],
                        }
                    )
            if window:
                cv2.imshow("mobilevision", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    summary.interrupted = True
                    break
            summary.frames += 1
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    except SourceTimeout as error:
        summary.stalled = True
        summary.ended_early = str(error)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        source.close()
        if window:
            cv2.destroyAllWindows()
    # Finalise what was written so far: reached on a normal end, a cut-short input, a stall or Ctrl-C.
    if video is not None:
        path = video.close()
        if path is not None:
            summary.written.insert(0, str(path))
    if results_sink is not None:
        summary.written.append(str(results_sink.close()))
    if image_entries:
        atomic_write_json(out / "images.json", image_entries)
        summary.written.append(str(out / "images.json"))
    if not source.is_video:
        saved = [w for w in summary.written if w.endswith(".png")]
        summary.written = [w for w in summary.written if not w.endswith(".png")]
        folders = [f"{out / adapter.drawn_folder}/"] + sorted({f"{Path(w).parent}/" for w in saved})
        if summary.frames:
            summary.written.insert(0, f"{' and '.join(folders)} ({summary.frames} images)")
    summary.skipped = list(source.skipped)
    summary.ended_early = summary.ended_early or source.ended_early
    return summary


def predict_video(
    predictor: Any,
    video: str | os.PathLike[str] | int,
    output_dir: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    capture_factory: CaptureFactory | None = None,
    progress: bool = False,
) -> PredictSummary:
    """Open a video file / camera / URL and run `predict_source` on it (the annotated video is `summary.written[0]`)."""
    return predict_source(
        predictor, open_source(video, timeout=timeout, capture_factory=capture_factory), output_dir, progress=progress
    )
