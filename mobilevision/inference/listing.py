"""The images a dataset lists (a COCO json's `images`, a split list), as a `Source` carrying the dataset's ids: what
`mobilevision predict --annotations / --split-list` predicts on, so `evaluate` scores what `validate` scores."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from mobilevision.data.decode import BadSample, resolve_inside
from mobilevision.data.report import DataWarning
from mobilevision.errors import UserError
from mobilevision.inference.sources import ImageSource, unique_names


def listed_images(
    root: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    split_list: str | os.PathLike[str] | None = None,
) -> ImageSource:
    """The images a dataset lists, under the folder `root`, with their dataset ids: what to predict on to evaluate.

    Args:
        annotations: a COCO-format json; its `images` entries (`file_name` relative to `root`, `id`) give the files
            and the ids `predictions.json` will carry, so `mobilevision evaluate detection --gt` that json scores
            them. Names that leave `root` are refused (skipped and reported, as a dataset reader would).
        split_list: a split list (VOC `ImageSets/Segmentation/val.txt`): `<root>/<id>.jpg` (or .jpeg, .png) for each
            id; outputs are named by id, as the ground-truth masks are.

    A listed file that is missing or unreadable is skipped with a warning and reported (never silently dropped).

    Raises:
        UserError: `root` is not a folder; DatasetError: the list is malformed or empty.
    """
    from mobilevision.errors import DatasetError

    folder = Path(root)
    if not folder.is_dir():
        raise UserError(
            f"{folder}: not a folder (with --annotations or --split-list, --source is the image folder "
            "the list's names are relative to)"
        )
    paths: list[Path] = []
    names: list[str] = []
    ids: dict[str, int] = {}
    stated_sizes: dict[str, tuple[int, int]] = {}
    refused: list[dict[str, str]] = []
    if annotations is not None:
        from mobilevision.data.jsonio import load_json

        data = load_json(annotations)
        entries = data.get("images") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DatasetError(f"{annotations}: not a COCO json (no 'images' list)")
        kept_ids: list[int] = []
        kept_sizes: list[tuple[int, int] | None] = []
        for position, entry in enumerate(entries):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("id"), int)
                or not isinstance(entry.get("file_name"), str)
            ):
                raise DatasetError(f"{annotations}: images[{position}]: needs an integer 'id' and a 'file_name'")
            try:
                paths.append(resolve_inside(folder, entry["file_name"]))
                kept_ids.append(int(entry["id"]))
                width, height = entry.get("width"), entry.get("height")
                known = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
                kept_sizes.append((width, height) if known else None)
            except BadSample as error:
                refused.append({"file": entry["file_name"], "reason": error.reason})
        names = unique_names(paths, folder.resolve())
        ids = dict(zip(names, kept_ids))
        stated_sizes = {name: size for name, size in zip(names, kept_sizes) if size is not None}
    elif split_list is not None:
        from mobilevision.data.decode import IMAGE_SUFFIXES
        from mobilevision.data.name_split import read_name_list
        from mobilevision.data.splits import id_images, read_id_list

        listed = read_name_list(split_list)
        if listed and all(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in listed):
            # A run's splits/val.txt: file names relative to the images folder (kept inside it, as a reader does).
            for name in listed:
                try:
                    paths.append(resolve_inside(folder, name))
                except BadSample as error:
                    refused.append({"file": name, "reason": error.reason})
            names = unique_names(paths, folder.resolve())
            ids = {n: index + 1 for index, n in enumerate(names)}
        # read_id_list keeps only a path's stem, so no id can lead out of the folder.
        for id_ in read_id_list(split_list) if not paths and not refused else []:
            candidates = id_images(folder, id_)
            paths.append(next((c for c in candidates if c.is_file()), candidates[0]))
            names.append(id_)
        ids = {name: index + 1 for index, name in enumerate(names)}
    else:
        raise ValueError("give annotations or split_list")
    if not paths:
        raise DatasetError(f"{annotations or split_list}: lists no images")
    source = ImageSource(
        kind="images",
        description=f"{folder} ({len(paths)} images listed in {annotations or split_list})",
        paths=paths,
        names=names,
        length=len(paths),
        image_ids=ids,
        stated_sizes=stated_sizes,
    )
    for item in refused:
        warnings.warn(f"{item['file']}: {item['reason']}, skipped", DataWarning, stacklevel=2)
    source.skipped.extend(refused)
    return source
