"""Predictions find their ground truth by file name: `evaluate detection` with predict's own ids 1..N (images.json),
a user folder as `--gt` restricted by a run's split list; `predict --save-txt` rows from the same files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from mobilevision.cli import main as cli_main
from mobilevision.cli.predict import save_yolo_txt
from mobilevision.data.report import DataWarning
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data.voc_folder import VOCFolderDetection
from mobilevision.tasks.detection.match_names import match_by_file_name
from tests.fixtures.own_data import make_truth, write_voc


def test_match_longest_suffix_and_unmatched():
    gt = [{"id": 7, "file_name": "images/a.jpg"}, {"id": 8, "file_name": "b.jpg"}, {"id": 9, "file_name": "x/a.jpg"}]
    predicted = [
        {"id": 1, "file_name": "/data/set/images/a.jpg"},
        {"id": 2, "file_name": "/elsewhere/b.jpg"},
        {"id": 3, "file_name": "/data/c.jpg"},
    ]
    assert match_by_file_name(gt, predicted, "images.json") == ({1: 7, 2: 8}, ["/data/c.jpg"])
    with pytest.raises(DatasetError, match="matches two"):
        match_by_file_name([*gt, {"id": 10, "file_name": "./b.jpg"}],
                           [{"id": 1, "file_name": "/q/b.jpg"}], "images.json")  # fmt: skip


def _predict_perfectly(root: Path, out: Path, names: list[str]) -> None:
    """What predict on a folder writes (ids 1..N in its own order) with the ground truth's boxes as detections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VOCFolderDetection(root)
    gt = dataset.coco.dataset
    by_name = {Path(i["file_name"]).name: i for i in gt["images"]}
    images, results = [], []
    for new_id, name in enumerate(reversed(names), 1):  # another order than the ground truth's ids
        image = by_name[name]
        images.append({"id": new_id, "file_name": str(root / "images" / name), "width": image["width"],
                       "height": image["height"]})  # fmt: skip
        for a in gt["annotations"]:
            if a["image_id"] == image["id"]:
                results.append({"image_id": new_id, "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9})
    out.mkdir()
    (out / "images.json").write_text(json.dumps(images))
    (out / "predictions.json").write_text(json.dumps(results))
    (out / "classes.json").write_text(
        json.dumps({"class_names": ["background", "cat", "dog"], "category_ids": [0, 0, 1]})
    )


def test_evaluate_folder_gt_split_list_matches_by_name(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", make_truth())
    held_out = ["img001.png", "img003.png", "img004.png"]
    (tmp_path / "val.txt").write_text("\n".join(held_out) + "\n")
    _predict_perfectly(root, tmp_path / "pred", held_out)
    argv = ["evaluate", "detection", "--gt", str(root), "--split-list", str(tmp_path / "val.txt"), "--json",
            "--predictions", str(tmp_path / "pred" / "predictions.json")]  # fmt: skip
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["map"] == pytest.approx(1.0)
    assert "3 predicted images matched" in captured.err and "the 3 images of" in captured.err
    # Without the split list every image of the folder is ground truth: only the 3 predicted on are scored.
    assert cli_main(argv[:4] + argv[6:]) == 0
    assert json.loads(capsys.readouterr().out)["map"] == pytest.approx(1.0)
    # Without images.json the ids 1..3 are taken as the ground truth's: the wrong images, a low score.
    (tmp_path / "pred" / "images.json").unlink()
    assert cli_main(argv) == 2 or json.loads(capsys.readouterr().out)["map"] < 0.5


def test_save_txt_yolo_rows(tmp_path):
    root = write_voc(tmp_path / "voc", make_truth())
    _predict_perfectly(root, tmp_path / "pred", ["img000.png", "img002.png"])
    assert save_yolo_txt(tmp_path / "pred") == 2
    assert (tmp_path / "pred" / "labels" / "img000.txt").read_text() == ""  # the background image
    images = json.loads((tmp_path / "pred" / "images.json").read_text())
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    rows = (tmp_path / "pred" / "labels" / "img002.txt").read_text().splitlines()
    image = next(i for i in images if i["file_name"].endswith("img002.png"))
    ours = [r for r in results if r["image_id"] == image["id"]]
    assert len(rows) == len(ours) > 0
    cls, cx, cy, w, h, score = rows[0].split()
    x, y, bw, bh = ours[0]["bbox"]
    assert int(cls) == ours[0]["category_id"] and float(score) == pytest.approx(0.9)
    assert float(cx) == pytest.approx((x + bw / 2) / image["width"], abs=1e-5)
    assert float(h) == pytest.approx(bh / image["height"], abs=1e-5)


def test_split_list_of_file_names_as_a_run_writes_them(tmp_path):
    from mobilevision.inference.listing import listed_images

    root = write_voc(tmp_path / "voc", make_truth())
    (tmp_path / "val.txt").write_text("img001.png\nimg004.png\n../escape.png\n")
    with pytest.warns(DataWarning, match="escape"):
        source = listed_images(root / "images", split_list=tmp_path / "val.txt")
    assert [p.name for p in source.paths] == ["img001.png", "img004.png"]
    assert len(source.skipped) == 1
