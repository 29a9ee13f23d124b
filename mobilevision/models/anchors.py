"""SSD default boxes as in the TF Object Detection API's `ssd_anchor_generator`, and the box coder.

Default boxes live in normalised image coordinates (0..1 on each axis), so one set serves any input size with the
same feature-map sizes; `DefaultBoxes.pixels` scales them to an input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DefaultBoxes:
    """The SSD default-box recipe (TF reference: 6 maps, scales 0.2 to 0.95, ratios 1, 2, 1/2, 3, 1/3).

    Map k (k = 0..L-1) has scale s_k = min_scale + (max_scale - min_scale) * k / (L - 1) and, at every location, one
    box per aspect ratio r (width s_k * sqrt(r), height s_k / sqrt(r)) plus one box of ratio 1 and scale
    sqrt(s_k * s_{k+1}) (s_L = 1). With `reduce_lowest` the finest map has three boxes instead: (0.1, 1), (s_0, 2),
    (s_0, 1/2). Box centres are the centres of the map's cells.

    `square_pixels` (the TF reference's `multiple_grid_anchor_generator`, which scales its base anchor by
    min(H, W) / H and min(H, W) / W): a ratio-1 box is square in pixels on a non-square input, its side a fraction
    of the shorter image side; without it, box sizes are fractions of each side (the same on square inputs).
    """

    num_maps: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    reduce_lowest: bool = True
    clip: bool = False
    square_pixels: bool = False

    def __post_init__(self) -> None:
        if self.num_maps < 1:
            raise ValueError(f"num_maps must be >= 1, got {self.num_maps}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"aspect_ratios must be positive, got {self.aspect_ratios}")

    @property
    def scales(self) -> list[float]:
        if self.num_maps == 1:
            return [self.min_scale, 1.0]
        step = (self.max_scale - self.min_scale) / (self.num_maps - 1)
        return [self.min_scale + step * k for k in range(self.num_maps)] + [1.0]

    def shapes(self, k: int) -> list[tuple[float, float]]:
        """(width, height) of the boxes at each location of map `k`, normalised to the image."""
        scales = self.scales
        if k == 0 and self.reduce_lowest:
            pairs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            pairs = [(scales[k], r) for r in self.aspect_ratios]
            pairs.append((math.sqrt(scales[k] * scales[k + 1]), 1.0))
        return [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in pairs]

    @property
    def num_anchors(self) -> list[int]:
        """Default boxes per location on each map."""
        return [len(self.shapes(k)) for k in range(self.num_maps)]

    def normalized(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        *,
        dtype: torch.dtype = torch.float32,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Default boxes [A, 4] as (cx, cy, w, h) in 0..1, maps in order, locations row-major, boxes innermost.
        `image_size` (h, w) matters only with `square_pixels`."""
        if len(feature_sizes) != self.num_maps:
            raise ValueError(f"expected {self.num_maps} feature map sizes, got {list(feature_sizes)}")
        aspect = torch.ones(2, dtype=torch.float64)
        if self.square_pixels and image_size is not None:
            h, w = image_size
            aspect = torch.tensor([min(h, w) / w, min(h, w) / h], dtype=torch.float64)
        out = []
        for k, (fh, fw) in enumerate(feature_sizes):
            wh = torch.tensor(self.shapes(k), dtype=torch.float64) * aspect  # [n, 2]
            cy = (torch.arange(fh, dtype=torch.float64) + 0.5) / fh
            cx = (torch.arange(fw, dtype=torch.float64) + 0.5) / fw
            gy, gx = torch.meshgrid(cy, cx, indexing="ij")
            centers = torch.stack([gx, gy], -1).reshape(-1, 1, 2).expand(-1, len(wh), 2)
            sizes = wh.reshape(1, -1, 2).expand(fh * fw, -1, 2)
            out.append(torch.cat([centers, sizes], -1).reshape(-1, 4))
        boxes = torch.cat(out)
        if self.clip:
            xyxy = cxcywh_to_xyxy(boxes).clamp(0, 1)
            boxes = xyxy_to_cxcywh(xyxy)
        return boxes.to(dtype)

    def pixels(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        image_size: tuple[int, int],
        *,
        device: torch.device | None = None,
    ) -> Tensor:
        """Default boxes [A, 4] as (x1, y1, x2, y2) in the pixels of an input of `image_size` (h, w)."""
        boxes = cxcywh_to_xyxy(self.normalized(feature_sizes, image_size=tuple(image_size)))
        h, w = image_size
        return (boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype)).to(device)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


# Largest log-scale change a decoded box may take, as in torchvision's BoxCoder: stops exp() overflowing early in
# training or on a hostile input.
_MAX_LOG_SCALE = math.log(1000.0 / 16)
# Largest centre shift, in default-box sizes: far outside any image, and it keeps a finite but huge offset (a diverged
# or hostile output) from overflowing to inf, whose boxes would give NaN IoUs in NMS. torchvision does not bound it.
_MAX_CENTRE_SHIFT = 1e4


@dataclass(frozen=True)
class BoxCoder:
    """SSD/Faster R-CNN box coding relative to default boxes.

    `weights` are the TF reference's box coder scales (y 10, x 10, h 5, w 5, i.e. variances 0.1 and 0.2), applied
    here in (x, y, w, h) order: offsets = (10 dx / wa, 10 dy / ha, 5 log(w / wa), 5 log(h / ha)).
    """

    weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """boxes, anchors: [..., 4] x1y1x2y2 -> offsets [..., 4]."""
        b, a = xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(anchors)
        wx, wy, ww, wh = self.weights
        return torch.stack(
            [
                wx * (b[..., 0] - a[..., 0]) / a[..., 2],
                wy * (b[..., 1] - a[..., 1]) / a[..., 3],
                ww * torch.log(b[..., 2] / a[..., 2]),
                wh * torch.log(b[..., 3] / a[..., 3]),
            ],
            -1,
        )

    def decode(self, offsets: Tensor, anchors: Tensor) -> Tensor:
        """offsets [..., 4], anchors [..., 4] x1y1x2y2 (broadcastable) -> boxes [..., 4] x1y1x2y2."""
        a = xyxy_to_cxcywh(anchors)
        wx, wy, ww, wh = self.weights
        cx = (offsets[..., 0] / wx).clamp(-_MAX_CENTRE_SHIFT, _MAX_CENTRE_SHIFT) * a[..., 2] + a[..., 0]
        cy = (offsets[..., 1] / wy).clamp(-_MAX_CENTRE_SHIFT, _MAX_CENTRE_SHIFT) * a[..., 3] + a[..., 1]
        w = torch.exp((offsets[..., 2] / ww).clamp(max=_MAX_LOG_SCALE)) * a[..., 2]
        h = torch.exp((offsets[..., 3] / wh).clamp(max=_MAX_LOG_SCALE)) * a[..., 3]
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
