"""`data convert`: the same fixture boxes through every format after conversion (VOC XML -> YOLO -> COCO -> VOC,
and each source to each target), split structure kept, bad output folders refused in one line."""

from __future__ import annotations

import warnings

import pytest

from mobilevision.cli import main as cli_main
from mobilevision.data.report import DataWarning
from mobilevision.tasks.detection.data.convert import read_splits
from tests.fixtures.own_data import CLASSES, boxes_by_image, make_truth, write_coco, write_voc, write_yolo


def _boxes(root) -> dict[str, list]:
    """{image base name: sorted [(class, box rounded to 0.01)]} over every split of a folder, as training reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        _, classes, splits = read_splits(root)
    assert classes == CLASSES
    out: dict[str, list] = {}
    for dataset in splits.values():
        for name, rows in boxes_by_image(dataset.coco).items():
            out[name] = sorted((c, tuple(round(v, 2) for v in box)) for c, box in rows)
    return out


WRITERS = {"voc": write_voc, "yolo": write_yolo, "coco": write_coco}


@pytest.mark.parametrize("source", ["voc", "yolo", "coco"])
def test_convert_each_format_to_each_keeps_the_boxes(tmp_path, source):
    root = WRITERS[source](tmp_path / "src", make_truth())
    expected = _boxes(root)
    assert sum(len(v) for v in expected.values()) > 5 and expected["img000.png"] == []  # a background image too
    for target in ("coco", "yolo", "voc"):
        out = tmp_path / f"to-{target}"
        assert cli_main(["data", "convert", "--root", str(root), "--to", target, "--out", str(out)]) == 0
        assert _boxes(out) == expected, f"{source} -> {target}"


def test_round_trip_voc_yolo_coco_voc_and_splits(tmp_path):
    root = write_voc(tmp_path / "voc", make_truth())
    expected = _boxes(root)
    previous = root
    for step, target in enumerate(["yolo", "coco", "voc"]):
        out = tmp_path / f"{step}-{target}"
        assert (
            cli_main(["data", "convert", "--from", "auto", "--root", str(previous), "--to", target, "--out", str(out)])
            == 0
        )
        assert _boxes(out) == expected
        previous = out
    # YOLO's two splits stay two splits in every target (Roboflow's folders for COCO, per-split VOC folders).
    yolo = write_yolo(tmp_path / "yolo", make_truth())
    for target in ("coco", "voc", "yolo"):
        out = tmp_path / f"split-{target}"
        assert cli_main(["data", "convert", "--root", str(yolo), "--to", target, "--out", str(out)]) == 0
        assert set(read_splits(out)[2]) == {"train", "val"}


def test_convert_refuses_a_non_empty_or_inner_output(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", make_truth(3))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert cli_main(["data", "convert", "--root", str(root), "--to", "coco", "--out", str(tmp_path / "full")]) == 2
    assert cli_main(["data", "convert", "--root", str(root), "--to", "coco", "--out", str(root / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not empty" in err[0] and "inside the dataset" in err[1]
