"""Predictions that find their ground truth: `mobilevision predict` on a folder numbers the images 1..N and writes
`images.json` (id, file_name) beside `predictions.json`; a ground truth from another place (a labelling tool's json,
a user folder read as training reads it) has its own ids. `match_by_file_name` maps the predicted ids to the ground
truth's through the file names, and `ground_truth_of_folder` reads a user folder (VOC XML, YOLO, COCO) as the
ground truth, restricted to a split list (a run folder's `splits/val.txt`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from mobilevision.data.jsonio import load_json
from mobilevision.errors import DatasetError


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(str(name).replace("\\", "/")).parts


def match_by_file_name(
    gt_images: list[dict[str, Any]], predicted_images: list[dict[str, Any]], source: str
) -> tuple[dict[int, int], list[str]]:
    """{predicted image id: ground-truth image id} by file name, and the predicted names with no ground truth.

    A predicted path (absolute, as predict writes it) matches the ground-truth `file_name` that is the longest suffix
    of it (`images/00001.jpg` before `00001.jpg`); two ground-truth names equally long matching one path: an error.

    Raises:
        DatasetError: a malformed `images.json` entry or an ambiguous match, naming `source` and the entry.
    """
    by_base: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for image in gt_images:
        parts = _parts(image["file_name"])
        if parts:
            by_base.setdefault(parts[-1], []).append((parts, int(image["id"])))
    mapping: dict[int, int] = {}
    unmatched: list[str] = []
    for position, entry in enumerate(predicted_images):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), int)
            or not isinstance(entry.get("file_name"), str)
        ):
            raise DatasetError(f"{source}: entry {position}: needs an integer 'id' and a 'file_name'")
        parts = _parts(entry["file_name"])
        found = [(len(p), gid) for p, gid in by_base.get(parts[-1] if parts else "", []) if parts[-len(p) :] == p]
        if not found:
            unmatched.append(entry["file_name"])
            continue
        found.sort(reverse=True)
        if len(found) > 1 and found[0][0] == found[1][0]:
            raise DatasetError(f"{source}: entry {position}: {entry['file_name']} matches two ground-truth images")
        mapping[entry["id"]] = found[0][1]
    return mapping, unmatched


def remap_results(
    results: list[dict[str, Any]], gt_images: list[dict[str, Any]], images_json: str | os.PathLike[str]
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """(results with the ground truth's image ids, the ground-truth ids predicted on, the unmatched names) using the
    `images.json` predict wrote beside the results."""
    predicted = load_json(images_json)
    if not isinstance(predicted, list):
        raise DatasetError(f"{images_json}: not a list of images (id, file_name)")
    mapping, unmatched = match_by_file_name(gt_images, predicted, str(images_json))
    out = [{**r, "image_id": mapping[r["image_id"]]} for r in results if r.get("image_id") in mapping]
    return out, sorted(set(mapping.values())), unmatched


def ground_truth_of_folder(
    root: str | os.PathLike[str], split_list: str | os.PathLike[str] | None = None, format: str = "auto"
) -> tuple[dict[str, Any], str]:
    """The COCO ground truth (a dict, original pixels, the data's own category ids as training uses them) of a user
    detection folder, restricted to the names of `split_list` (one file name a line, as a run writes them), and a
    line saying what was read.

    Raises:
        DatasetError: structure, or a split list naming nothing in the folder.
    """
    import warnings

    from mobilevision.data.name_split import read_name_list
    from mobilevision.data.report import DataWarning
    from mobilevision.tasks.detection.data.convert import read_splits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        fmt, _, splits = read_splits(root, format)
        if split_list is None:
            datasets = list(splits.values())
            if len(datasets) > 1:
                datasets = [splits["val"]]
            chosen = datasets[0]
            what = f"{root} ({fmt}, {'val split' if len(splits) > 1 else 'every image'}: {len(chosen)} images)"
        else:
            names = set(read_name_list(split_list))
            holding = [d for d in splits.values() if names & set(d.file_names)]
            if not holding:
                raise DatasetError(f"{split_list}: names none of the images of {root}")
            chosen = holding[0].select(names)
            what = f"{root} ({fmt}), the {len(chosen)} images of {Path(split_list)}"
    return chosen.coco.dataset, what
