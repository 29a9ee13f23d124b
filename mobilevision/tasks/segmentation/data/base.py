"""What every segmentation format shares: the sample record, the reading path and the collate function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.data.dataset import ReportingDataset
from mobilevision.data.decode import BadSample
from mobilevision.data.report import DefectReport
from mobilevision.data.seeding import SampleKey
from mobilevision.models.normalize import IMAGENET_MEAN
from mobilevision.tasks.segmentation.masks import VOID, check_labels, read_index_mask, read_sbd_mask

# The ImageNet mean in 0..255, rounded ((124, 116, 104)): what padding adds to a uint8 image, so that after the
# model's normalisation the padded pixels are (nearly) zero, as in the TF DeepLab reference.
IMAGENET_MEAN_255: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # type: ignore[assignment]

# A transform takes and returns albumentations-style keywords: image (H, W, 3) uint8, mask (H, W) uint8.
Transform = Callable[..., dict[str, Any]]
Sample = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, tuple[int, int]]


class _Defect(Exception):
    """One sample is unusable: `file` is the offending file (image or mask), `reason` says why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class _Sample:
    id: str
    image: Path
    mask: Path | None  # an index PNG or an SBD .mat; None when the mask is rendered (COCO)
    coco_id: int | None = None


class SegmentationDataset(ReportingDataset):
    """The reading path every segmentation format shares: decode image and mask (the image in the mask's frame),
    check them, transform, convert to tensors. A format fills `samples` and `class_names`."""

    def __init__(self, *, root: Path, transform: Transform | None, with_orig_size: bool) -> None:
        self.root = root
        self.transform = transform
        self.with_orig_size = with_orig_size
        self.class_names: list[str] = []
        self.samples: list[_Sample] = []
        self._init_reporting()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ids(self) -> list[str]:
        """The id of each usable sample, aligned with indices (VOC id, or the image file stem)."""
        return [sample.id for sample in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, path: Path) -> str:
        """How a file is named in the report: relative to the dataset root when inside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _read_mask(self, sample: _Sample, image: np.ndarray | None) -> np.ndarray:
        """The sample's mask; file masks need no image (`image` is None), rendered ones (COCO) are drawn for it."""
        assert sample.mask is not None
        try:
            if sample.mask.suffix == ".mat":
                return read_sbd_mask(sample.mask)
            return read_index_mask(sample.mask)
        except BadSample as error:
            raise _Defect(self._name(sample.mask), error.reason) from None

    def _stated_size(self, sample: _Sample) -> tuple[int, int] | None:
        """(width, height) the annotation file gives for a sample whose mask is rendered (no mask file)."""
        return None

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode and check sample `index`: image (H, W, 3) uint8 RGB and mask (H, W) uint8 before any transform.

        The image is read in the mask's frame: an EXIF orientation that would turn it away from its mask's size is
        left unapplied (counted as `exif_frame_kept`), since the mask was drawn on the stored pixels.

        Raises:
            _Defect: naming the offending file and the reason.
        """
        sample = self.samples[index]
        mask = self._read_mask(sample, None) if sample.mask is not None else None
        stated = (mask.shape[1], mask.shape[0]) if mask is not None else self._stated_size(sample)
        try:
            image = self.read_image(index, sample.image, stated)
        except BadSample as error:
            raise _Defect(self._name(sample.image), error.reason) from None
        if mask is None:
            mask = self._read_mask(sample, image)
        mask_file = self._name(sample.mask) if sample.mask is not None else self._name(sample.image)
        if mask.shape != image.shape[:2]:
            (mh, mw), (ih, iw) = mask.shape[:2], image.shape[:2]
            raise _Defect(mask_file, f"mask is {mw}x{mh} (WxH) but its image is {iw}x{ih}")
        try:
            mask = check_labels(mask, self.num_classes)
        except BadSample as error:
            raise _Defect(mask_file, error.reason) from None
        return image, mask

    def _record(self, index: int, defect: _Defect) -> None:
        self.skip_sample(index, defect.file, defect.reason)

    def __getitem__(self, key: SampleKey) -> Sample | None:
        """`key` is an index, or `(index, seed)` from a training sampler to seed this sample's augmentation."""
        index = self.sample_index(self.transform, key)
        try:
            image, mask = self.load(index)
        except _Defect as defect:
            self._record(index, defect)
            return None
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask_t = torch.from_numpy(mask.astype(np.int64))  # a writable copy (decoded masks are read-only views)
        if self.with_orig_size:
            return image_t, mask_t, orig_size
        return image_t, mask_t

    def check(self) -> DefectReport:
        """Decode every sample (no transform) and return the full report: construction-time and decoding defects."""
        for index in range(len(self)):
            try:
                self.load(index)
            except _Defect as defect:
                self._record(index, defect)
        return self.report

    def _skip_at_construction(self, path: Path, reason: str) -> None:
        self.report.skip(self._name(path), reason)


def collate_segmentation(
    batch: Sequence[Sample | None], *, fill: tuple[int, int, int] = IMAGENET_MEAN_255
) -> tuple[torch.Tensor, ...] | None:
    """Stack samples, dropping None (bad samples). Returns None when every sample of the batch was bad.

    Samples of different sizes (whole-image evaluation) are padded at the bottom/right to the largest height and
    width of the batch, image with `fill`, mask with 255 (void), which keeps the padding contract of
    `eval_transforms`. `sizes` records each sample's own size, so evaluation can run every image on its own canvas
    and give the same answer whatever else shares its batch (the image-pooling branch averages over the whole input,
    padding included).

    Returns:
        `(images uint8 [B, 3, H, W], masks int64 [B, H, W], sizes int64 [B, 2])` with sizes the (h, w) of each
        sample before this batch padding, plus `orig_sizes int64 [B, 2]` (h, w of the decoded images) when the
        samples carry them (`with_orig_size=True`).
    """
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return None
    height = max(int(s[0].shape[1]) for s in samples)
    width = max(int(s[0].shape[2]) for s in samples)
    images = torch.empty((len(samples), 3, height, width), dtype=torch.uint8)
    images[:] = torch.tensor(fill, dtype=torch.uint8).view(1, 3, 1, 1)
    masks = torch.full((len(samples), height, width), VOID, dtype=torch.int64)
    for i, sample in enumerate(samples):
        image, mask = sample[0], sample[1]
        images[i, :, : image.shape[1], : image.shape[2]] = image
        masks[i, : mask.shape[0], : mask.shape[1]] = mask
    sizes = torch.tensor([[int(s[0].shape[1]), int(s[0].shape[2])] for s in samples], dtype=torch.int64)
    if len(samples[0]) == 3:
        orig_sizes = torch.tensor([list(s[2]) for s in samples], dtype=torch.int64)  # type: ignore[misc]
        return images, masks, sizes, orig_sizes
    return images, masks, sizes


# The public name, for the readers of other task packages (the joint model's).
MaskDefect = _Defect
