"""Segmentation from two folders: images and masks matched by file stem (CamVid-style index PNGs, binary 0/255 masks,
RGB colour masks with a colour table).

Masks (`mask_mode`):
- `index`: pixel values are class indices 0..C-1; `ignore_index` (255 by default) is void.
- `binary`: 0 and 255 (the usual black/white export), read as classes 0 and 1; said in the report.
- `rgb`: colours, mapped through `colors` (one [r, g, b] per class; `ignore_color` is void).
- `auto` (default): `rgb` for colour masks when `colors` is given, `binary` when the first mask holds only 0 and 255
  (and more than one class is not named), `index` otherwise.

Class names: `names`, or a classes file (one name a line, or `name r g b` lines that give the colours too), or,
without either, `background`/`foreground` for binary masks and `class_0..class_{K-1}` from the largest value found.
An image without a mask or a mask without an image is warned about and counted; a mask value that is not a class
skips that sample with a warning naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from mobilevision.data.decode import IMAGE_SUFFIXES, BadSample
from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError, InvalidValueError
from mobilevision.tasks.segmentation.data.base import SegmentationDataset, Transform, _Defect, _Sample
from mobilevision.tasks.segmentation.masks import VOID, decode_index_mask

MASK_MODES = ("auto", "index", "binary", "rgb")


def read_classes_file(path: str | os.PathLike[str]) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """(names, colours or None) of a classes file: `name` or `name r g b` per line (`#` comments, blank lines skipped).

    Raises:
        DatasetError: unreadable, empty, a duplicate name, a bad colour, naming the file and line.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the classes file ({error})") from None
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (1, 4):
            raise DatasetError(f"{path}: line {number}: expected 'name' or 'name r g b', got {line.strip()!r}")
        if fields[0] in names:
            raise DatasetError(f"{path}: line {number}: class {fields[0]!r} appears twice")
        names.append(fields[0])
        if len(fields) == 4:
            try:
                rgb = tuple(int(v) for v in fields[1:])
            except ValueError:
                raise DatasetError(f"{path}: line {number}: colour {fields[1:]} is not three integers") from None
            if not all(0 <= v <= 255 for v in rgb):
                raise DatasetError(f"{path}: line {number}: colour {rgb} is outside 0..255")
            colors.append(rgb)  # type: ignore[arg-type]
    if not names:
        raise DatasetError(f"{path}: the class list is empty")
    if colors and len(colors) != len(names):
        raise DatasetError(f"{path}: {len(colors)} colours for {len(names)} classes (give a colour on every line)")
    return names, colors or None


def _by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.stem, path)
    return found


def _raw_mask(path: Path) -> np.ndarray:
    """A mask file's pixels: (H, W) for index/grey masks, (H, W, 3) for colour ones."""
    from PIL import Image

    try:
        return decode_index_mask(path.read_bytes())
    except FileNotFoundError:
        raise BadSample("mask file not found") from None
    except BadSample as error:
        if "colour-coded" not in error.reason:
            raise
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception:  # noqa: BLE001 - a colour mask PIL cannot decode
        raise BadSample("cannot decode colour mask") from None


class FolderSegmentation(SegmentationDataset):
    """Images + masks folders (see the module docstring).

    Args:
        images, masks: the two folders; pairs are matched by file stem.
        names, classes_file: the class names (index 0 first); see the module docstring for the default.
        colors: the colour table of `rgb` masks, one [r, g, b] per class.
        mask_mode: "auto", "index", "binary" or "rgb".
        ignore_index: the void value of index masks (read as 255, the package's void); `ignore_color` for rgb.
        files: keep only these image file names (a split).
        transform, with_orig_size: as `VOCSegmentation`.

    Samples: `(image uint8 [3, H, W], mask int64 [H, W] in 0..C-1 or 255)`.
    """

    def __init__(
        self,
        images: str | os.PathLike[str],
        masks: str | os.PathLike[str],
        *,
        names: Sequence[str] | None = None,
        classes_file: str | os.PathLike[str] | None = None,
        colors: Sequence[Sequence[int]] | None = None,
        mask_mode: str = "auto",
        ignore_index: int = VOID,
        ignore_color: Sequence[int] | None = None,
        files: Collection[str] | None = None,
        transform: Transform | None = None,
        with_orig_size: bool = False,
    ) -> None:
        self.images_dir, self.masks_dir = Path(images), Path(masks)
        super().__init__(root=self.images_dir.parent, transform=transform, with_orig_size=with_orig_size)
        for folder, what in ((self.images_dir, "image"), (self.masks_dir, "mask")):
            if not folder.is_dir():
                raise DatasetError(f"{folder}: {what} folder not found")
        if mask_mode not in MASK_MODES:
            raise InvalidValueError(f"mask_mode {mask_mode!r} is not one of {MASK_MODES}")
        file_colors = None
        if classes_file is not None:
            names, file_colors = read_classes_file(classes_file)
        self.colors = [tuple(int(v) for v in c) for c in (colors or file_colors or [])]
        self.ignore_index, self.ignore_color = int(ignore_index), tuple(ignore_color) if ignore_color else None
        self.notes: list[str] = []
        image_files, mask_files = _by_stem(self.images_dir), _by_stem(self.masks_dir)
        if files is not None:
            wanted = set(files)
            image_files = {s: p for s, p in image_files.items() if p.name in wanted}
            mask_files = {s: p for s, p in mask_files.items() if s in image_files}
        for stem in sorted(set(mask_files) - set(image_files)):
            warnings.warn(f"{mask_files[stem]}: a mask with no image: not used", DataWarning, stacklevel=2)
        self.report.count("masks_without_image", len(set(mask_files) - set(image_files)))
        for stem, path in sorted(image_files.items()):
            if stem in mask_files:
                self.samples.append(_Sample(stem, path, mask_files[stem]))
        self.report.images = len(self.samples) + len(set(image_files) - set(mask_files))
        for stem in sorted(set(image_files) - set(mask_files)):
            self._skip_at_construction(image_files[stem], "image with no mask")
        if not self.samples:
            raise DatasetError(f"{self.images_dir}, {self.masks_dir}: no image has a mask of the same stem")
        self.mask_mode = self._decide_mode(mask_mode, names)
        self.class_names = self._decide_names(names)
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(f"names: a class appears twice in {self.class_names}")
        if self.mask_mode == "rgb" and len(self.colors) != len(self.class_names):
            raise DatasetError(f"rgb masks need one colour per class: {len(self.colors)} for {self.class_names}")
        self.report.extra.update(mask_mode=self.mask_mode, classes=", ".join(self.class_names))
        if self.notes:
            self.report.extra["notes"] = list(self.notes)

    @property
    def file_names(self) -> list[str]:
        return [s.image.name for s in self.samples]

    def _first_mask(self) -> np.ndarray | None:
        try:
            return _raw_mask(self.samples[0].mask)  # type: ignore[arg-type]
        except BadSample:
            return None

    def _decide_mode(self, mode: str, names: Sequence[str] | None) -> str:
        if mode != "auto":
            chosen = mode
        else:
            first = self._first_mask()
            if first is not None and first.ndim == 3:
                chosen = "rgb"
            elif (
                first is not None and set(np.unique(first).tolist()) <= {0, 255} and (names is None or len(names) == 2)
            ):
                chosen = "binary"
            else:
                chosen = "index"
        if chosen == "binary":
            self.notes.append("masks are 0/255 (binary): read as classes 0 and 1")
        return chosen

    def _decide_names(self, names: Sequence[str] | None) -> list[str]:
        if names is not None:
            if not names:
                raise DatasetError("names: the class list is empty")
            return [str(n) for n in names]
        if self.mask_mode == "binary":
            return ["background", "foreground"]
        if self.mask_mode == "rgb":
            return [f"class_{i}" for i in range(len(self.colors))]
        top = -1
        for sample in self.samples:
            try:
                values = np.unique(_raw_mask(sample.mask))  # type: ignore[arg-type]
            except BadSample:
                continue
            values = values[(values != self.ignore_index) & (values != VOID)]
            top = max(top, int(values.max()) if len(values) else -1)
        if top < 0:
            raise DatasetError(f"{self.masks_dir}: the class list is empty (no mask holds a class value); give names")
        self.notes.append(f"classes from the masks' values 0..{top} (give names to name them)")
        return [f"class_{i}" for i in range(top + 1)]

    def _read_mask(self, sample: _Sample, image: np.ndarray | None) -> np.ndarray:
        assert sample.mask is not None
        try:
            raw = _raw_mask(sample.mask)
            return self._to_labels(raw)
        except BadSample as error:
            raise _Defect(self._name(sample.mask), error.reason) from None

    def _to_labels(self, raw: np.ndarray) -> np.ndarray:
        """Class indices (H, W) uint8 with 255 void, from a raw mask in this dataset's mode."""
        if self.mask_mode == "rgb":
            if raw.ndim != 3:
                raise BadSample("a single-channel mask in a colour-mask (rgb) dataset")
            out = np.full(raw.shape[:2], VOID, np.uint8)
            known = np.zeros(raw.shape[:2], bool)
            for index, color in enumerate(self.colors):
                hit = (raw == np.array(color, raw.dtype)).all(-1)
                out[hit], known = index, known | hit
            if self.ignore_color is not None:
                known |= (raw == np.array(self.ignore_color, raw.dtype)).all(-1)
            if not known.all():
                colour = tuple(int(v) for v in raw[~known][0])
                raise BadSample(f"mask colour {colour} is not in the colour table {self.colors}")
            return out
        if raw.ndim == 3:
            raise BadSample(f"a colour mask in a {self.mask_mode} dataset (give colors or a classes file)")
        if self.mask_mode == "binary":
            bad = sorted(set(np.unique(raw).tolist()) - {0, 255})
            if bad:
                raise BadSample(f"binary mask with values other than 0 and 255: {bad[:10]}")
            return (raw == 255).astype(np.uint8)
        if self.ignore_index != VOID:
            raw = np.where(raw == VOID, VOID + 1, raw)  # a real 255 is then out of range, not void
            raw = np.where(raw == self.ignore_index, VOID, raw)
        return raw
