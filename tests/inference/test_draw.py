from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilevision.inference.draw import (
    class_color,
    colorize_mask,
    contact_sheet,
    draw_detections,
    overlay_mask,
    write_image,
)


def test_draw_detections_draws_boxes_without_touching_the_input() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    result = {
        "boxes": np.array([[10, 20, 60, 80]], np.float32),
        "scores": np.array([0.9], np.float32),
        "labels": np.array([3]),
        "names": ["cat"],
    }
    drawn = draw_detections(image, result)
    assert image.max() == 0, "input modified"
    assert drawn.shape == image.shape
    assert tuple(drawn[50, 10]) == class_color(3)  # left edge of the box
    assert drawn[50, 35].max() == 0  # inside the box stays untouched
    assert draw_detections(image, {"boxes": np.zeros((0, 4))}).max() == 0


def test_class_colors_are_never_black() -> None:
    assert all(sum(class_color(i)) > 0 for i in range(0, 600))


def test_mask_colouring_and_overlay() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[:, 6:] = 1
    colours = colorize_mask(mask)
    assert colours.shape == (10, 12, 3) and tuple(colours[0, 0]) == (0, 0, 0) and tuple(colours[0, 8]) == (128, 0, 0)
    image = np.full((10, 12, 3), 200, np.uint8)
    blended = overlay_mask(image, mask, alpha=0.5)
    assert (blended[:, :6] == 200).all() and tuple(blended[0, 8]) == (164, 100, 100)
    with pytest.raises(ValueError, match="shape"):
        overlay_mask(image, mask[:5])


def test_contact_sheet_grid() -> None:
    images = [np.full((60, 80, 3), 40 * i, np.uint8) for i in range(5)]
    sheet = contact_sheet(images, cols=3, pad=2)
    assert sheet.shape == (2 * (60 + 2) + 2, 3 * (80 + 2) + 2, 3)
    assert tuple(sheet[2 + 30, 2 + 82 + 40]) == (40, 40, 40)  # second tile
    assert tuple(sheet[-10, -10]) == (255, 255, 255)  # the empty sixth cell
    tall = contact_sheet([np.zeros((200, 50, 3), np.uint8)], cols=4, cell_size=(100, 100), captions=["x"])
    assert tall.shape == (108, 108, 3)
    with pytest.raises(ValueError, match="cols"):
        contact_sheet(images, cols=0)
    with pytest.raises(ValueError, match="captions"):
        contact_sheet(images, captions=["a"])


def test_write_image_is_atomic_and_rgb(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255
    write_image(tmp_path / "red.png", image)
    assert cv2.imread(str(tmp_path / "red.png"))[0, 0].tolist() == [0, 0, 255]
    assert [p.name for p in tmp_path.iterdir()] == ["red.png"]
