"""The synthetic shapes generator: layout, determinism, boxes consistent with the masks, atomic install, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.cli import main as cli_main
from mobilevision.data.shapes import CLASSES, ensure_shapes, generate_shapes, is_complete


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "set"
    generate_shapes(root, num_images=40, seed=7, image_size=(128, 160))
    return root


def test_layout_and_coco_structure(shapes: Path) -> None:
    coco = json.loads((shapes / "annotations.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(CLASSES) + 1))
    assert len(coco["images"]) == 40
    for image in coco["images"]:
        stem = Path(image["file_name"]).stem
        assert (shapes / "images" / image["file_name"]).is_file()
        assert (shapes / "masks" / f"{stem}.png").is_file()
        assert (image["height"], image["width"]) == (128, 160)
    assert not list(shapes.parent.glob(".*tmp*")), "temporary folder left behind"


def test_boxes_cover_their_mask_pixels_and_masks_are_palette_indices(shapes: Path) -> None:
    coco = json.loads((shapes / "annotations.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    sizes = []
    for image in coco["images"]:
        mask_file = Image.open(shapes / "masks" / (Path(image["file_name"]).stem + ".png"))
        assert mask_file.mode == "P"
        mask = np.asarray(mask_file)
        assert set(np.unique(mask)) <= set(range(len(CLASSES) + 1))
        covered = np.zeros(mask.shape, bool)
        for ann in by_image.get(image["id"], []):
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 160 + 1e-6 and y + h <= 128 + 1e-6
            x1, y1, x2, y2 = int(np.floor(x)), int(np.floor(y)), int(np.ceil(x + w)), int(np.ceil(y + h))
            inside = mask[y1:y2, x1:x2] == ann["category_id"]
            # At least half of every annotated shape is visible (mostly hidden objects are never kept).
            assert inside.sum() >= ann["area"] > 0
            covered[y1:y2, x1:x2] = True
            sizes.append(max(w, h))
        # Every labelled pixel belongs to some box: no visible shape without a box.
        assert not ((mask > 0) & ~covered).any()
    assert min(sizes) < 20 and max(sizes) > 60, "sizes should range from small to large"


def test_deterministic_by_seed_and_independent_of_count(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", num_images=3, seed=1, image_size=(64, 64))
    b = generate_shapes(tmp_path / "b", num_images=5, seed=1, image_size=(64, 64))
    c = generate_shapes(tmp_path / "c", num_images=3, seed=2, image_size=(64, 64))
    for name in ("000000.jpg", "000002.jpg"):
        assert (a.images / name).read_bytes() == (b.images / name).read_bytes()
    assert (a.images / "000000.jpg").read_bytes() != (c.images / "000000.jpg").read_bytes()


def test_refuses_existing_folder_and_ensure_regenerates_only_when_needed(tmp_path: Path) -> None:
    from mobilevision.errors import UserError

    root = tmp_path / "s"
    ensure_shapes(root, num_images=2, seed=0, image_size=(48, 48))
    assert is_complete(root, num_images=2, seed=0, image_size=(48, 48))
    stamp = (root / "annotations.json").stat().st_mtime_ns
    ensure_shapes(root, num_images=2, seed=0, image_size=(48, 48))
    assert (root / "annotations.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError):
        generate_shapes(root, num_images=2, seed=0)
    (root / "shapes.json").unlink()  # as if interrupted before completion
    assert not is_complete(root, num_images=2, seed=0, image_size=(48, 48))
    ensure_shapes(root, num_images=3, seed=0, image_size=(48, 48))
    assert len(json.loads((root / "annotations.json").read_text())["images"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert cli_main(["data", "shapes", "--out", str(out), "--num-images", "2", "--seed", "3", "--size", "40x50"]) == 0
    image = json.loads((out / "annotations.json").read_text())["images"][0]
    assert (image["height"], image["width"]) == (40, 50)
    assert cli_main(["data", "shapes", "--out", str(out), "--num-images", "2"]) == 2  # exists: a clear error
    assert "already exists" in capsys.readouterr().err


def test_ensure_refuses_to_replace_foreign_folders(tmp_path: Path) -> None:
    from mobilevision.errors import UserError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a generated shapes set"):
        ensure_shapes(tmp_path / "mine", num_images=1)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    assert ensure_shapes(tmp_path / "empty", num_images=1, image_size=(32, 32)).annotations.is_file()
