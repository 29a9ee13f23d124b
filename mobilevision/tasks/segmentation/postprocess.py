"""The mask post-processing at its floor: the argmax of bilinearly upsampled logits, without upsampling every class
of every pixel.

Bilinear upsampling makes each output pixel a convex combination (weights >= 0, sum 1) of at most four neighbouring
low-resolution logit vectors, the corners of its cell. If the four corners share their argmax class c (l_c >= l_j at
every corner, for every class j), c is also the argmax of the combination: sum_k w_k l_c,k >= sum_k w_k l_j,k. Float
rounding keeps that order (rounding is monotone, and every class is combined by the same operations), so at most an
exact tie can change the winner. Hence `upsampled_argmax`: the argmax at low resolution, then every output pixel
whose cell has four equal corner labels takes that label (an index gather of the low-resolution label map); only the
pixels of the other cells (the class borders) are interpolated, and only over the classes that can win in their
cell (`_candidates`), along the width at the cell's two low-resolution rows, then along the height per pixel.
Cells with two candidates are decided by the sign of their (bilinear) difference. Two-class logits upsample their
one difference plane; when borders cover so much that this would cost more than the full upsampling (few classes,
noise), the full upsampling is done instead (`BORDER_COST`).

Measured (`mobilevision benchmark masks`, docs/benchmarks.md): a busy 21x24x24 map to 480x640 in ~15 ms where the
full upsampling + argmax took ~33 ms, a one-class one in ~1 ms.

The sampling is PyTorch's `F.interpolate(..., mode="bilinear")`: half-pixel centres clamped at the border
(`align_corners=False`) or corner-aligned (`align_corners=True`, the TF reference's), and the same integer cell of
each output pixel; the values at border pixels may differ from `F.interpolate`'s in the last bit (its kernels order
the four products differently, channels-last and planar alike), so a pixel whose two best classes are within float
rounding of each other may take either: the same freedom as between `F.interpolate`'s own two memory layouts.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torch.nn import functional as F


@lru_cache(maxsize=64)  # the same few sizes over and over (read-only tensors)
def _source_index(size: int, source: int, align_corners: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per output index along one axis: the two source indices and the weight of the second (PyTorch's rule)."""
    dst = torch.arange(size, dtype=torch.float32)
    if align_corners:
        scale = (source - 1) / (size - 1) if size > 1 else 0.0
        src = dst * torch.tensor(scale, dtype=torch.float32)
    else:
        src = ((dst + 0.5) * torch.tensor(source / size, dtype=torch.float32) - 0.5).clamp(min=0)
    first = src.long().clamp(max=source - 1)
    weight = src - first
    second = torch.where(first < source - 1, first + 1, first)
    return first, second, weight


def _blocks(index: Tensor, source: int) -> tuple[Tensor, Tensor, int]:
    """Output indices grouped by source cell (`index` is non-decreasing): each cell's first output index and count,
    and the largest count."""
    counts = torch.bincount(index, minlength=source)
    return counts.cumsum(0) - counts, counts, int(counts.max())


def upsampled_argmax(
    logits: Tensor, size: tuple[int, int], *, align_corners: bool = False, crop: tuple[int, int] | None = None
) -> Tensor:
    """`F.interpolate(logits[None], size, mode="bilinear", align_corners=...)[0].argmax(0)`, cropped to its top-left
    `crop` (rows, columns) when given, computed without the full upsampling (see the module's docstring).

    Args:
        logits: [C, h, w], any layout and floating dtype (computed in float32).
        size: the upsampled size (H, W) the sampling grid is defined on (a padded canvas, say).
        crop: the (rows, columns) kept of it, from the top-left; only those are computed.
    Returns:
        class indices [crop or size], uint8 when C <= 256 else int64; ties keep the first class.
    """
    classes, height, width = logits.shape
    rows, cols = tuple(size) if crop is None else (min(crop[0], size[0]), min(crop[1], size[1]))
    if classes == 2:  # one plane: the sign of the upsampled difference (upsampling is linear), ties to class 0
        difference = (logits[1].float() - logits[0].float())[None, None]
        full = F.interpolate(difference, size=tuple(size), mode="bilinear", align_corners=align_corners)[0, 0]
        return (full[:rows, :cols] > 0).to(torch.uint8)
    table = logits.detach().float().permute(1, 2, 0).contiguous()  # [h, w, C]: the classes of a cell contiguous
    low = table.argmax(-1)
    y0, y1, wy = (t[:rows] for t in _source_index(size[0], height, align_corners))
    x0, x1, wx = (t[:cols] for t in _source_index(size[1], width, align_corners))
    # A cell (i, j) is uniform when its four corners, (i or i+1, j or j+1) clamped at the border, agree.
    below = torch.cat([low[1:], low[-1:]], 0)
    uniform = (low == below) & (low == torch.cat([low[:, 1:], low[:, -1:]], 1))
    uniform &= low == torch.cat([below[:, 1:], below[:, -1:]], 1)
    dtype = torch.uint8 if classes <= 256 else torch.int64
    row_start, row_count, row_max = _blocks(y0, height)
    col_start, col_count, col_max = _blocks(x0, width)
    mask = low.to(dtype).index_select(1, x0)[y0]  # low[y0][:, x0], the fastest way found
    cells = (~uniform & (row_count[:, None] > 0) & (col_count[None, :] > 0)).flatten().nonzero().flatten()
    if cells.numel():
        # A border pixel costs a few times a full-upsampling pixel-class (gathers, several candidates): with few
        # classes and borders everywhere (noise), the full upsampling is the cheaper exact answer.
        border = int((row_count[cells // width] * col_count[cells % width]).sum())
        if BORDER_COST * border > rows * cols * classes:
            return _full_argmax(table, size, align_corners)[:rows, :cols].to(dtype)
        ys, xs = (y0, y1, wy, row_start, row_count, row_max), (x0, x1, wx, col_start, col_count, col_max)
        _fill_borders(mask, table, cells, ys, xs)
    return mask


# How many full-upsampling pixel-classes one border pixel costs, about (measured on the 2026-12-03 dev VM).
BORDER_COST = 4


def _full_argmax(table: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """The argmax of the full upsampling of `table` [h, w, C], channels-last (the classes of a pixel contiguous).
    The view is built from the [h, w, C] tensor so that its batch stride is h * w * C: a [C, h, w] channels-last
    tensor with a batch dimension added has batch stride C, which `F.interpolate` reads as planar (~10x slower)."""
    full = F.interpolate(table[None].permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=align_corners)
    return full[0].argmax(0)


def _candidates(corners: Tensor, labels: Tensor) -> Tensor:
    """corners [n, 4, C] and their argmax labels [n, 4] -> [n, C]: the classes that can be the argmax somewhere in
    each cell.

    The difference of two classes' interpolations is bilinear in the position, so it takes its extremes at the
    corners: a class below another one at all four corners never wins. The other classes tried are the corner
    labels (a class beaten by some class is, in practice, beaten by one of them; keeping a few more candidates
    costs time, not exactness). A margin keeps float-rounding ties."""
    best = corners.gather(2, labels[:, None, :].expand(-1, 4, -1))  # [n, corner, label]
    beaten = (best[:, :, :, None] > (corners + 1e-5 * (1 + corners.abs()))[:, :, None, :]).all(1).any(1)
    return ~beaten


def _fill_borders(mask: Tensor, table: Tensor, cells: Tensor, ys: tuple, xs: tuple) -> None:
    """The exact labels of the output pixels of the non-uniform `cells` (flat indices into [h, w]), in place."""
    height, width, classes = table.shape
    ci, cj = cells // width, cells % width
    ci1, cj1 = (ci + 1).clamp(max=height - 1), (cj + 1).clamp(max=width - 1)
    corners = torch.stack([table[ci, cj], table[ci, cj1], table[ci1, cj], table[ci1, cj1]], 1)
    candidate = _candidates(corners, corners.argmax(-1))
    count = candidate.sum(-1)
    # Candidates in ascending class order (ties keep the first class); cells grouped by their number of them.
    order = torch.argsort((~candidate).to(torch.int64) * classes + torch.arange(classes), dim=-1)
    # Cells grouped by their number of candidates (above 4 rounded up to a power of two: fewer calls); short lists
    # padded with their first candidate (a repeat never wins: the comparison is strict).
    bucket = torch.where(count <= 4, count, 2 ** torch.ceil(torch.log2(count.float())).long())
    for slots in torch.unique(bucket).tolist():
        group = (bucket == slots).nonzero().flatten()
        slots = min(slots, classes)
        padded = torch.where(torch.arange(slots) < count[group, None], order[group, :slots], order[group, :1])
        _fill_group(mask, table, (ci[group], ci1[group], cj[group]), padded, ys, xs)


def _fill_group(mask: Tensor, table: Tensor, cell: tuple[Tensor, ...], order: Tensor, ys: tuple, xs: tuple) -> None:
    """Cells (rows `ci`, next rows `ci1`, columns `cj`) with K candidate classes `order` [n, K] each, in place.

    (Deciding first on a grid of every 4th pixel inside the cells, then only the grid squares whose corners
    disagree, is as exact but was slower here: more, smaller tensor operations.)"""
    ci, _, cj = cell
    row_start, row_count, row_max = ys[3:]
    col_start, col_count, col_max = xs[3:]
    # Each cell's block of output pixels, padded to the largest block by repeating its last row and column (the
    # same pixel written twice with the same value).
    r = row_start[ci][:, None] + torch.minimum(torch.arange(row_max), row_count[ci][:, None] - 1)  # [n, R]
    q = col_start[cj][:, None] + torch.minimum(torch.arange(col_max), col_count[cj][:, None] - 1)  # [n, Q]
    label = _labels_at(table, cell, order, r, q, ys, xs)
    mask.view(-1).scatter_(0, (r[:, :, None] * len(xs[0]) + q[:, None, :]).flatten(), label.flatten())


def _labels_at(
    table: Tensor, cell: tuple[Tensor, ...], order: Tensor, r: Tensor, q: Tensor, ys: tuple, xs: tuple
) -> Tensor:
    """The labels [n, A, B] at the output pixels (rows `r` [n, A]) x (columns `q` [n, B]) of each cell, among its K
    candidate classes `order` [n, K] (ascending: ties keep the first)."""
    height, width, classes = table.shape
    ci, ci1, _ = cell
    x0, x1, wx = xs[:3]
    flat = table.view(-1)
    left, right, weight = x0[q][:, None, :], x1[q][:, None, :], wx[q][:, None, :]
    ends = []
    for row in (ci, ci1):  # along the width at the cells' two low-resolution rows: [n, K, B]
        base = row[:, None, None] * width
        start = flat[(base + left) * classes + order[:, :, None]]
        ends.append(start * (1 - weight) + flat[(base + right) * classes + order[:, :, None]] * weight)
    upper, lower = ends
    upper, slope = upper[:, :, None, :], (lower - upper)[:, :, None, :]  # [n, K, 1, B]
    down = ys[2][r][:, :, None]  # [n, A, 1]
    if order.shape[1] == 2:  # the most common border: the sign of the two classes' (bilinear) difference
        second = torch.addcmul(upper[:, 1] - upper[:, 0], down, slope[:, 1] - slope[:, 0]) > 0
        labels = order.gather(1, second.view(len(order), -1).long()).view(second.shape)
        return labels.to(torch.uint8) if classes <= 256 else labels
    best = torch.addcmul(upper[:, 0], down, slope[:, 0])  # [n, A, B]
    slot = torch.zeros(best.shape)  # the winning candidate's index (float: torch.where with a number is fast)
    for k in range(1, order.shape[1]):
        value = torch.addcmul(upper[:, k], down, slope[:, k])
        slot = torch.where(value > best, float(k), slot)
        torch.maximum(best, value, out=best)
    labels = order.gather(1, slot.view(len(order), -1).long()).view(best.shape)
    return labels.to(torch.uint8) if classes <= 256 else labels
