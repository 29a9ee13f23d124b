"""`upsampled_argmax` gives the mask of the full bilinear upsampling (the argmax of `F.interpolate`), up to
float-rounding ties, on every path: odd sizes, both align modes, a crop of a padded canvas, down-sampling."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from mobilevision.tasks.segmentation.inference import segmentation_mask
from mobilevision.tasks.segmentation.postprocess import upsampled_argmax

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"


def _assert_same_mask(
    logits: Tensor,
    size: tuple[int, int],
    got: Tensor,
    *,
    align_corners: bool = False,
    crop: tuple[int, int] | None = None,
) -> None:
    """`got` equals the argmax of the full upsampling wherever its two best classes are more than float rounding
    apart (both memory layouts of `F.interpolate` as the reference)."""
    for layout in (torch.contiguous_format, torch.channels_last):
        planes = logits[None].float().contiguous(memory_format=layout)
        full = F.interpolate(planes, size=size, mode="bilinear", align_corners=align_corners)[0]
        if crop is not None:
            full = full[:, : crop[0], : crop[1]]
        assert got.shape == full.shape[1:]
        differ = got.long() != full.argmax(0)
        if differ.any():
            top = full.topk(2, dim=0).values
            tie = (top[0] - top[1]) <= 1e-5 * max(1.0, float(full.abs().max()))
            assert not (differ & ~tie).any(), f"{int((differ & ~tie).sum())} pixels differ beyond a tie"


def _blobs(classes: int, size: tuple[int, int], seed: int) -> Tensor:
    """Smooth logits: a few classes win over regions, as a trained model's do (most cells uniform)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, classes, 3, 4, generator=generator) * 4
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0] + 0.3 * torch.randn(
        classes, *size, generator=generator
    )


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    ("classes", "low", "size"),
    [
        (21, (7, 9), (61, 83)),
        (5, (13, 11), (97, 131)),
        (3, (1, 5), (10, 11)),
        (2, (5, 5), (5, 5)),
        (2, (6, 7), (47, 61)),
        (4, (9, 8), (4, 5)),
    ],
)
@pytest.mark.parametrize("cost", [0, 10**9], ids=["borders", "full"])
def test_equals_the_full_upsampling(
    classes: int,
    low: tuple[int, int],
    size: tuple[int, int],
    align_corners: bool,
    cost: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both ways: the border pass (whatever the border's share) and the full upsampling it falls back to when
    borders are everywhere."""
    monkeypatch.setattr("mobilevision.tasks.segmentation.postprocess.BORDER_COST", cost)
    generator = torch.Generator().manual_seed(classes * 100 + low[0])
    for logits in (torch.randn(classes, *low, generator=generator) * 3, _blobs(classes, low, seed=low[1])):
        got = upsampled_argmax(logits, size, align_corners=align_corners)
        assert got.dtype == torch.uint8
        _assert_same_mask(logits, size, got, align_corners=align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
def test_padded_canvas_then_crop(align_corners: bool) -> None:
    """Only the image's corner of the canvas is computed, equal to the full canvas cropped."""
    logits = _blobs(21, (33, 41), seed=3)
    canvas, image = (528, 656), (500, 643)
    got = upsampled_argmax(logits, canvas, align_corners=align_corners, crop=image)
    _assert_same_mask(logits, canvas, got, align_corners=align_corners, crop=image)
    assert torch.equal(segmentation_mask(logits, image, canvas=canvas), upsampled_argmax(logits, canvas, crop=image))


def test_a_class_winning_at_no_corner_is_found() -> None:
    """Between a corner won by class 0 and one won by class 1, class 2 (second everywhere) wins the middle: the
    candidates of a cell are not only its corner labels."""
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.9, 0.9]]])  # [3, 1, 2]
    got = upsampled_argmax(logits, (1, 8))
    _assert_same_mask(logits, (1, 8), got)
    assert set(got.flatten().tolist()) == {0, 1, 2}


def test_ties_keep_the_first_class_and_many_classes_give_int64() -> None:
    assert torch.equal(upsampled_argmax(torch.zeros(4, 3, 3), (7, 7)), torch.zeros(7, 7, dtype=torch.uint8))
    logits = torch.randn(300, 4, 5, generator=torch.Generator().manual_seed(0))
    got = upsampled_argmax(logits, (9, 11))
    assert got.dtype == torch.int64
    _assert_same_mask(logits, (9, 11), got)


@pytest.mark.parametrize("name", ["segmentation_2026-11-29.ckpt.xz", "multitask_2026-12-02.ckpt.xz"])
def test_trained_checkpoint_logits(name: str, tmp_path: Path) -> None:
    """The logits of a checkpoint's network on a busy image, at odd sizes and on a padded canvas."""
    from mobilevision.benchmarks.images import busy_image
    from mobilevision.checkpoint import load_checkpoint

    path = tmp_path / name.removesuffix(".xz")
    path.write_bytes(lzma.decompress((FIXTURES / name).read_bytes()))
    network, _ = load_checkpoint(path)
    image = torch.from_numpy(busy_image((97, 131))).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        network.eval()
        if hasattr(network, "head_logits"):
            logits = network.head_logits(image)[0]
        else:
            logits = network.forward_all(image, upsample=False)[3][0]
    for size, crop in (((97, 131), None), ((200, 150), None), ((112, 144), (97, 131))):
        _assert_same_mask(logits, size, upsampled_argmax(logits, size, crop=crop), crop=crop)
