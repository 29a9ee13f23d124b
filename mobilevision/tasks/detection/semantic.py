"""Dense semantic supervision for a detector, in training only: an auxiliary per-cell classification loss on the
maps the detection head reads (in the spirit of DES, Zhang et al., "Single-Shot Object Detection with Enriched
Semantics", CVPR 2018, which supervises a segmentation branch of SSD).

Each tapped map gets a 1x1 classifier that predicts, at every cell, the class of what lies under the cell's centre.
The target comes from the sample's semantic mask when the data carries one (`target["mask"]`, input pixels, the
detector's label space, 255 = void: e.g. `ShapesMultiTaskDataModule`, or masks rendered from COCO's polygons), else
it is painted from the boxes (the smallest box holding the centre gives its class, background elsewhere). The loss
is the cross-entropy averaged over the cells and over the maps.

Why: the detection loss supervises a few default boxes per object; this one supervises every cell, pushing the
backbone to say densely *what* is where, which a detector trained from random weights in a short budget lacks most
(telling small look-alike objects apart). Measured on the shapes demo in docs/demo.md. The classifiers belong to the
training task, not to the model: nothing is exported, inference costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOID = 255


def _cell_centres(size: tuple[int, int], image_size: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    (h, w), (height, width) = size, image_size
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (height / h)
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (width / w)
    return ys, xs


def paint_box_labels(boxes: Tensor, labels: Tensor, size: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """Class per cell [h, w] (int64, 0 = background) of a `size` = (h, w) grid over an image of `image_size`
    = (H, W): the label of the smallest of `boxes` ([N, 4] x1y1x2y2 input pixels) holding the cell's centre."""
    out = torch.zeros(size, dtype=torch.int64, device=boxes.device)
    if boxes.numel() == 0:
        return out
    ys, xs = _cell_centres(size, image_size, boxes.device)
    boxes = boxes.float()
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # [N, h]
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # [N, w]
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # [N, h, w]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0.0)[:, None, None]
    best = torch.where(inside, area, torch.full_like(area, float("inf"))).min(dim=0)
    covered = torch.isfinite(best.values)
    out[covered] = labels.to(device=boxes.device, dtype=torch.int64)[best.indices[covered]]
    return out


def sample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """The mask's class at each cell centre of a `size` grid over it ([H, W] -> [h, w] int64, void kept)."""
    height, width = int(mask.shape[-2]), int(mask.shape[-1])
    ys, xs = _cell_centres(size, (height, width), mask.device)
    rows = ys.long().clamp(max=height - 1)
    cols = xs.long().clamp(max=width - 1)
    return mask[rows][:, cols].long()


def cell_labels(target: Mapping[str, Any], size: tuple[int, int], image_size: tuple[int, int],
                device: torch.device) -> Tensor:
    """The target of one image on one map: its mask sampled at the cells when it has one, else its painted boxes."""
    mask = target.get("mask")
    if mask is not None:
        return sample_mask(mask.to(device), size)
    return paint_box_labels(target["boxes"].to(device), target["labels"], size, image_size)


class SemanticLoss(nn.Module):
    """One 1x1 classifier per map (`channels`: the maps' depths) over `num_classes` (background included); the
    forward pass returns the cross-entropy against `cell_labels`, averaged over the maps (void cells ignored).

    The classifiers' biases start at the log of a class prior (`background_prior` for background, the rest shared
    evenly), so the first steps do not spend themselves learning that most cells are background.
    """

    def __init__(self, channels: Sequence[int], num_classes: int, *, background_prior: float = 0.75) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        if not 0.0 < background_prior < 1.0:
            raise ValueError(f"background_prior must be in (0, 1), got {background_prior}")
        self.classifiers = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=1) for c in channels)
        prior = torch.full((num_classes,), (1.0 - background_prior) / (num_classes - 1))
        prior[0] = background_prior
        for conv in self.classifiers:
            nn.init.normal_(conv.weight, std=0.01)
            with torch.no_grad():
                conv.bias.copy_(prior.log())

    def forward(self, maps: Sequence[Tensor], targets: Sequence[Mapping[str, Any]],
                image_size: tuple[int, int]) -> Tensor:
        if len(maps) != len(self.classifiers):
            raise ValueError(f"{len(self.classifiers)} classifiers but {len(maps)} maps")
        total = maps[0].new_zeros((), dtype=torch.float32)
        for feature, classifier in zip(maps, self.classifiers):
            size = (int(feature.shape[-2]), int(feature.shape[-1]))
            labels = torch.stack([cell_labels(t, size, image_size, feature.device) for t in targets])
            if bool((labels == VOID).all()):
                total = total + classifier(feature).sum() * 0.0  # still joined to the graph
                continue
            total = total + F.cross_entropy(classifier(feature).float(), labels, ignore_index=VOID)
        return total / len(maps)
