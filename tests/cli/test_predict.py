from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mobilevision.checkpoint import save_checkpoint
from mobilevision.cli import main
from mobilevision.inference.draw import write_image
from tests.inference.models_for_tests import (
    detector_meta,
    random_image,
    segmenter_meta,
    small_detector,
    small_segmenter,
)
from tests.inference.test_sources import write_video

SMALL = ["--model", "ssdlite_mobilenet_v2", "--num-classes", "4", "--width-mult", "0.35", "--input-size", "96", "96"]


@pytest.fixture(scope="module")
def det_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96))
    )


def test_non_image_file_is_named_exit_2_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 not an image")
    code = main(["predict", *SMALL, "--source", str(tmp_path / "report.pdf"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "report.pdf" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing is written for a bad single input"


def test_images_to_annotations_and_coco_results(
    tmp_path: Path, det_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        write_image(tmp_path / "images" / f"{100 + i}.png", random_image(80, 100, seed=i))
    out = tmp_path / "images" / "out"  # inside the source folder: must not be read back on a second run
    for _ in range(2):
        code = main(
            [
                "predict",
                "--weights",
                str(det_ckpt),
                "--source",
                str(tmp_path / "images"),
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        assert code == 0
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["100.jpg", "101.jpg", "102.jpg"]
    results = json.loads((out / "predictions.json").read_text())
    assert results and {r["image_id"] for r in results} <= {100, 101, 102}
    assert {r["category_id"] for r in results} <= {10, 20, 30}
    assert all(len(r["bbox"]) == 4 and r["score"] > 0.3 for r in results)
    images = json.loads((out / "images.json").read_text())
    assert [i["id"] for i in images] == [100, 101, 102] and images[0]["height"] == 80
    assert "3 images" in capsys.readouterr().err


def test_video_output_has_input_fps_and_size(tmp_path: Path, det_ckpt: Path) -> None:
    write_video(tmp_path / "clip.avi", frames=8, size=(48, 64), fps=12.0)
    assert (
        main(
            [
                "predict",
                "--weights",
                str(det_ckpt),
                "--source",
                str(tmp_path / "clip.avi"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_annotated.avi"))  # the input's container is kept
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 8
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {r["image_id"] for r in results} <= set(range(8))


def test_truncated_video_is_finalised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_video(tmp_path / "clip.avi", frames=20, size=(48, 64))
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    code = main(
        ["predict", *SMALL, "--source", str(tmp_path / "cut.avi"), "--output", str(tmp_path / "out"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert "ended early" in err and "of 20 frames" in err
    capture = cv2.VideoCapture(str(tmp_path / "out" / "cut_annotated.avi"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert 0 < frames < 20
    assert f"{frames} frames" in err
    assert not list((tmp_path / "out").glob(".*")), "temporary files left behind"


def test_segmentation_writes_palette_masks_and_overlays(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "seg.ckpt", small_segmenter(), segmenter_meta(input_size=(64, 64)))
    write_image(tmp_path / "a.jpg", random_image(50, 70))
    assert (
        main(
            [
                "predict",
                "--weights",
                str(ckpt),
                "--source",
                str(tmp_path / "a.jpg"),
                "--output",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
        == 0
    )
    mask = Image.open(tmp_path / "out" / "masks" / "a.png")
    assert mask.mode == "P" and mask.size == (70, 50) and np.asarray(mask).max() < 3
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "a.jpg"))
    # The image, then (when it shows any class) a legend strip below naming the classes.
    assert overlay.shape[1:] == (70, 3) and overlay.shape[0] >= 50
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_show_without_a_display_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    write_image(tmp_path / "a.png", random_image())
    assert (
        main(
            [
                "predict",
                *SMALL,
                "--source",
                str(tmp_path / "a.png"),
                "--output",
                str(tmp_path / "o"),
                "--show",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "no display" in capsys.readouterr().err


def test_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", "--source", "x.png", "--output", str(tmp_path)])
    assert info.value.code == 2
    assert main(["predict", *SMALL, "--source", str(tmp_path / "nope.png"), "--output", str(tmp_path)]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_config_is_delegated_to_lightning_predict(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls = []
    fake = types.ModuleType("mobilevision.cli.fit")
    fake.predict = lambda argv: calls.append(list(argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mobilevision.cli.fit", fake)
    assert main(["predict", "-c", "configs/x.yaml", "--ckpt_path", "a.ckpt"]) == 0
    assert calls == [["-c", "configs/x.yaml", "--ckpt_path", "a.ckpt"]]


def test_folder_of_only_unreadable_images_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(Warning, match="broken.png"):
        code = main(
            ["predict", *SMALL, "--source", str(tmp_path / "imgs"), "--output", str(tmp_path / "out"), "--no-progress"]
        )
    err = capsys.readouterr().err
    assert code == 1 and "skipped 1 unreadable" in err and "Traceback" not in err
