"""The synthetic shapes with their masks (`mobilevision.data.shapes`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.jsonio import load_json
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.data.base import SegmentationDataset, Transform, _Sample


class ShapesSegmentation(SegmentationDataset):
    """The synthetic shapes set (`mobilevision.data.shapes`): `images/*`, `masks/<stem>.png`, `annotations.json`.

    The image list and class names come from `annotations.json` (COCO). Category ids must be 1..K: the index masks
    store the category id of the top-most shape, 0 for background, so class index = category id.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Transform | None = None,
        *,
        with_orig_size: bool = False,
    ) -> None:
        root = Path(root)
        annotation_file = root / "annotations.json"
        if not (root / "masks").is_dir():
            raise DatasetError(f"{root / 'masks'}: mask folder not found (expected images/, masks/, annotations.json)")
        super().__init__(root=root, transform=transform, with_orig_size=with_orig_size)
        data = load_json(annotation_file)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("images"), list)
            or not isinstance(data.get("categories"), list)
        ):
            raise DatasetError(f"{annotation_file}: expected a COCO object with lists images and categories")
        try:
            categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{annotation_file}: categories: malformed entry") from None
        ids = [i for i, _ in categories]
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetError(f"{annotation_file}: categories: ids must be 1..K (mask values), got {ids}")
        self.class_names = ["background"] + [name for _, name in categories]
        for image in data["images"]:
            try:
                file_name = str(image["file_name"])
            except (KeyError, TypeError):
                raise DatasetError(f"{annotation_file}: images: malformed entry {image!r}") from None
            self.report.images += 1
            try:
                # file_name is relative to images/ (COCO style); accept one relative to the root (images/x.png) too.
                path = resolve_inside(root / "images", file_name)
                if not path.is_file():
                    path = resolve_inside(root, file_name)
            except BadSample as error:
                self.report.skip(file_name, error.reason)
                continue
            stem = Path(file_name).stem
            mask = root / "masks" / f"{stem}.png"
            if not path.is_file():
                self._skip_at_construction(root / "images" / file_name, "image file not found (in annotations.json)")
            elif not mask.is_file():
                self._skip_at_construction(mask, "mask file not found")
            else:
                self.samples.append(_Sample(id=stem, image=path, mask=mask))


def open_shapes_segmentation(
    root: str | os.PathLike[str],
    transform: Transform | None = None,
    *,
    with_orig_size: bool = False,
    **generator_kwargs: Any,
) -> ShapesSegmentation:
    """Open the shapes set at `root`, generating it first when absent or made with other parameters.

    `generator_kwargs` go to `mobilevision.data.shapes.ensure_shapes` (`num_images` required, `seed`, `image_size`,
    ...); generation is safe when several DDP ranks call this at once.
    """
    from mobilevision.data.shapes import ensure_shapes  # the generator is only needed here

    paths = ensure_shapes(root, **generator_kwargs)
    return ShapesSegmentation(paths.root, transform, with_orig_size=with_orig_size)
