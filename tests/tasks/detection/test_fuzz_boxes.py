"""Box operations on arbitrary numbers: coding round trips, decoding never overflows, repair keeps boxes inside the
image or drops them, matching keeps its invariants.

Fixed example counts and `derandomize=True`: CI runs the same inputs every time, in bounded time.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchvision.ops import box_iou

from mobilevision.models.anchors import BoxCoder
from mobilevision.tasks.detection.data import sanitize_boxes
from mobilevision.tasks.detection.loss import match_anchors

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
F32_MAX = float(np.finfo(np.float32).max)


@st.composite
def valid_boxes(draw: st.DrawFn, n: int, *, min_size: float = 1.0, max_size: float = 500.0) -> torch.Tensor:
    """n boxes x1 y1 x2 y2 (float32) with x1 in -100..1000 and sides in min_size..max_size."""
    corner = st.floats(-100, 1000, allow_nan=False, width=32)
    side = st.floats(min_size, max_size, allow_nan=False, width=32)
    rows = [[draw(corner), draw(corner), draw(side), draw(side)] for _ in range(n)]
    xywh = torch.tensor(rows, dtype=torch.float32).reshape(n, 4)
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


@FUZZ
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(valid_boxes(n, max_size=400.0), valid_boxes(n, min_size=8.0, max_size=400.0))
    )
)
def test_encode_decode_round_trip(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    boxes, anchors = pair
    # Within the decoder's bound on the log-scale (62.5 default-box sizes; here at most 400 / 8 = 50) the round trip
    # is exact.
    coder = BoxCoder()
    decoded = coder.decode(coder.encode(boxes.double(), anchors.double()), anchors.double())
    torch.testing.assert_close(decoded, boxes.double(), rtol=1e-9, atol=1e-6)
    decoded32 = coder.decode(coder.encode(boxes, anchors), anchors)
    torch.testing.assert_close(decoded32, boxes, rtol=1e-4, atol=0.05)


finite_f32 = st.floats(-F32_MAX, F32_MAX, allow_nan=False, allow_infinity=False, width=32)


@FUZZ
@given(arrays(np.float32, st.tuples(st.integers(1, 16), st.just(4)), elements=finite_f32), st.integers(0, 2**16))
def test_decode_of_any_finite_offsets_is_finite(offsets: np.ndarray, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(len(offsets), 2, generator=generator) * 1000 - 100
    wh = torch.rand(len(offsets), 2, generator=generator) * 800 + 0.5
    anchors = torch.cat([xy, xy + wh], 1)
    boxes = BoxCoder().decode(torch.from_numpy(offsets), anchors)
    assert torch.isfinite(boxes).all(), (offsets, boxes)
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


any_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e300])


@settings(FUZZ, max_examples=300)
@given(
    arrays(np.float64, st.tuples(st.integers(0, 12), st.just(4)), elements=any_float),
    st.integers(1, 2000),
    st.integers(1, 2000),
    st.booleans(),
)
def test_sanitize_boxes_keeps_boxes_inside_or_drops_them(
    boxes: np.ndarray, width: int, height: int, size_known: bool
) -> None:
    kept, keep, n_clipped = sanitize_boxes(boxes, width if size_known else None, height if size_known else None)
    assert kept.dtype == np.float32 and kept.shape == (int(keep.sum()), 4) and keep.shape == (len(boxes),)
    assert 0 <= n_clipped <= len(kept)
    assert np.isfinite(kept).all()
    # Positive sides in float32, the dtype training uses: a box that rounds to zero width would make log(0) in the
    # box coder, an infinite loss.
    assert (kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all()
    if size_known:
        assert (kept[:, [0, 1]] >= 0).all() and (kept[:, 2] <= width).all() and (kept[:, 3] <= height).all()
        inside = (
            np.isfinite(boxes).all(1)
            & (boxes[:, 0] >= 0)
            & (boxes[:, 1] >= 0)
            & (boxes[:, 2] <= width)
            & (boxes[:, 3] <= height)
            & (boxes[:, 2] - boxes[:, 0] >= 1)
            & (boxes[:, 3] - boxes[:, 1] >= 1)
        )
        # Boxes already inside the image with at least a pixel of size are kept as they are.
        assert keep[inside].all()
        np.testing.assert_array_equal(kept[inside[keep]], boxes[inside].astype(np.float32))


@FUZZ
@given(
    st.integers(0, 6).flatmap(lambda g: st.tuples(valid_boxes(g), st.integers(1, 30).flatmap(valid_boxes))),
    st.sampled_from([0.3, 0.5, 0.7]),
)
def test_match_anchors_invariants(pair: tuple[torch.Tensor, torch.Tensor], threshold: float) -> None:
    gt, anchors = pair
    matched = match_anchors(gt, anchors, iou_threshold=threshold)
    assert matched.dtype == torch.int64 and matched.shape == (len(anchors),)
    assert ((matched >= -1) & (matched < len(gt))).all()
    if len(gt) == 0:
        assert (matched == -1).all()
        return
    iou = box_iou(gt, anchors)
    best_anchor = iou.argmax(dim=1)
    forced = torch.zeros(len(anchors), dtype=torch.bool)
    forced[best_anchor] = True
    # Every ground truth box owns its best default box (or shares it with another one whose best it also is).
    for g in range(len(gt)):
        owner = int(matched[best_anchor[g]])
        assert owner >= 0 and int(best_anchor[owner]) == int(best_anchor[g])
    # Every other default box takes its best ground truth above the threshold, or stays background.
    best_iou, best_gt = iou.max(dim=0)
    free = ~forced
    above = free & (best_iou >= threshold)
    assert torch.equal(matched[above], best_gt[above])
    assert (matched[free & (best_iou < threshold)] == -1).all()
