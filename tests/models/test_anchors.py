from __future__ import annotations

import math

import pytest
import torch

from mobilevision.models.anchors import BoxCoder, DefaultBoxes


def test_default_boxes_golden_two_maps() -> None:
    # Hand-computed: scales are 0.2 and 0.95 (+1.0 for the interpolated box); map 0 is the reduced lowest layer.
    boxes = DefaultBoxes(num_maps=2, min_scale=0.2, max_scale=0.95).normalized([(2, 2), (1, 1)])
    r2 = math.sqrt(2.0)
    r3 = math.sqrt(3.0)
    expected_first_cell = [
        [0.25, 0.25, 0.1, 0.1],
        [0.25, 0.25, 0.2 * r2, 0.2 / r2],
        [0.25, 0.25, 0.2 / r2, 0.2 * r2],
    ]
    expected_coarse = [
        [0.5, 0.5, 0.95, 0.95],
        [0.5, 0.5, 0.95 * r2, 0.95 / r2],
        [0.5, 0.5, 0.95 / r2, 0.95 * r2],
        [0.5, 0.5, 0.95 * r3, 0.95 / r3],
        [0.5, 0.5, 0.95 / r3, 0.95 * r3],
        [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)],
    ]
    assert boxes.shape == (2 * 2 * 3 + 6, 4)
    torch.testing.assert_close(boxes[:3], torch.tensor(expected_first_cell))
    # Row-major locations: the second cell is to the right of the first (x = 0.75, y = 0.25).
    torch.testing.assert_close(boxes[3, :2], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(boxes[9, :2], torch.tensor([0.75, 0.75]))
    torch.testing.assert_close(boxes[12:], torch.tensor(expected_coarse))


def test_reference_recipe_counts() -> None:
    recipe = DefaultBoxes()
    assert recipe.num_anchors == [3, 6, 6, 6, 6, 6]
    assert recipe.scales == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    sizes = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert recipe.normalized(sizes).shape[0] == 400 * 3 + (100 + 25 + 9 + 4 + 1) * 6
    pix = recipe.pixels(sizes, (320, 480))
    # Normalised coordinates scale per axis: the first box is 0.1 of each side, centred in the first cell.
    torch.testing.assert_close(pix[0], torch.tensor([12.0 - 24.0, 8.0 - 16.0, 12.0 + 24.0, 8.0 + 16.0]))


def test_encode_decode_round_trip() -> None:
    coder = BoxCoder()
    anchors = torch.tensor([[10.0, 10.0, 50.0, 30.0], [0.0, 0.0, 100.0, 100.0]])
    boxes = torch.tensor([[12.0, 8.0, 60.0, 33.0], [20.0, 30.0, 40.0, 90.0]])
    offsets = coder.encode(boxes, anchors)
    torch.testing.assert_close(coder.decode(offsets, anchors), boxes)
    # The reference's scales: 10 * dx / wa for the centre, 5 * log(w / wa) for the size.
    assert offsets[1, 0].item() == pytest.approx(10 * (30 - 50) / 100)
    assert offsets[1, 3].item() == pytest.approx(5 * math.log(60 / 100))


def test_decode_is_bounded_for_huge_offsets() -> None:
    out = BoxCoder().decode(torch.full((1, 4), 1e6), torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    assert torch.isfinite(out).all()
