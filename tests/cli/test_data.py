"""`mobilevision data check`: a hand-built COCO set holding every defect of issue 3 item 5, reported exactly, and
structural errors (malformed JSON, unknown ids) as one clear message with exit code 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.cli import main as cli_main


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _rgb(width: int = 64, height: int = 48) -> Image.Image:
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = (200, 30, 30)
    return Image.fromarray(array)


def build_defect_set(root: Path) -> tuple[Path, Path]:
    """Images folder + annotations json with one file per defect, plus good images in every colour mode."""
    images = root / "images"
    images.mkdir(parents=True)
    good = _jpeg(_rgb())
    (images / "good.jpg").write_bytes(good)
    (images / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (images / "empty.jpg").write_bytes(b"")
    (images / "notimage.jpg").write_bytes(b"<html>not an image</html>\n")
    (root / "x.jpg").write_bytes(good)  # exists, but outside the image folder: must not be read
    (root / "abs.jpg").write_bytes(good)
    (images / "gray.png").write_bytes(_png(_rgb().convert("L")))
    (images / "rgba.png").write_bytes(_png(_rgb().convert("RGBA")))
    (images / "cmyk.jpg").write_bytes(_jpeg(_rgb().convert("CMYK")))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display: 64x48 stored, 48x64 shown
    (images / "exif.jpg").write_bytes(_jpeg(_rgb(), exif=exif.tobytes()))
    (images / "background.jpg").write_bytes(good)
    files = [
        ("good.jpg", 64, 48),
        ("truncated.jpg", 64, 48),
        ("empty.jpg", 64, 48),
        ("missing.jpg", 64, 48),
        ("notimage.jpg", 64, 48),
        ("../x.jpg", 64, 48),
        (str(root / "abs.jpg"), 64, 48),
        ("gray.png", 64, 48),
        ("rgba.png", 64, 48),
        ("cmyk.jpg", 64, 48),
        ("exif.jpg", 48, 64),
        ("background.jpg", 64, 48),
    ]
    coco_images = [{"id": 10 + i, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(files)]
    boxes = [
        (10, 3, [5, 5, 20, 10], 0),  # fine
        (10, 7, [5, 5, 0, 10], 0),  # zero width -> dropped
        (10, 3, [5, 5, 10, -4], 0),  # negative height -> dropped
        (10, 7, [70, 50, 10, 10], 0),  # entirely outside 64x48 -> dropped
        (10, 3, [-5, 40, 20, 20], 0),  # partly outside -> clipped
        (10, 7, [0, 0, 30, 30], 1),  # crowd -> not a target
        (11, 3, [1, 1, 10, 10], 0),  # on the truncated image: the image is skipped, the box is fine
        (17, 7, [2, 2, 20, 20], 0),
        (18, 3, [2, 2, 20, 20], 0),
        (19, 7, [2, 2, 20, 20], 0),
        (20, 3, [2, 2, 40, 60], 0),  # on the rotated image, in displayed (48x64) pixels: fine
    ]
    annotations = [
        {"id": 100 + i, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": 1.0, "iscrowd": crowd}
        for i, (image_id, cat, bbox, crowd) in enumerate(boxes)
    ]
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    annotation_file = root / "instances.json"
    coco = {"images": coco_images, "annotations": annotations, "categories": categories}
    annotation_file.write_text(json.dumps(coco))
    return images, annotation_file


EXPECTED_SKIPPED = {
    "truncated.jpg": "truncated",
    "empty.jpg": "empty",
    "missing.jpg": "not found",
    "notimage.jpg": "not a readable image",
    "../x.jpg": "escapes",
    "abs.jpg": "absolute",
}


def test_check_json_reports_every_defect_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = build_defect_set(tmp_path)
    code = cli_main(
        ["data", "check", "--format", "coco", "--images", str(images), "--annotations", str(annotations), "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 12
    assert report["usable_images"] == 6
    assert report["skipped_images"] == 6
    assert report["dropped_boxes"] == 3
    assert report["clipped_boxes"] == 1
    assert report["crowd"] == 1
    assert report["object_classes"] == 2
    skipped = {
        Path(item["file"]).name if item["file"].startswith("/") else item["file"]: item["reason"]
        for item in report["skipped"]
    }
    assert set(skipped) == set(EXPECTED_SKIPPED)
    for name, fragment in EXPECTED_SKIPPED.items():
        assert fragment in skipped[name], (name, skipped[name])


def test_check_table_is_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = build_defect_set(tmp_path)
    args = ["data", "check", "--format", "coco", "--images", str(images), "--annotations", str(annotations)]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "usable_images   6" in out and "truncated.jpg: truncated" in out


def test_colour_modes_and_exif_decode_through_the_dataset(tmp_path: Path) -> None:
    from mobilevision.tasks.detection.data import CocoDetection

    images, annotations = build_defect_set(tmp_path)
    dataset = CocoDetection(images, annotations)
    by_name = {r.file_name: i for i, r in enumerate(dataset._records)}
    for name in ("gray.png", "rgba.png", "cmyk.jpg", "good.jpg"):
        image, target = dataset[by_name[name]]
        assert image.shape == (3, 48, 64) and image.dtype.is_floating_point is False
        # The top-left quarter is red in every mode but grey (where it is the luma of that red).
        top_left = image[:, 5, 5].tolist()
        if name == "gray.png":
            assert max(top_left) - min(top_left) <= 2
        else:
            assert top_left[0] > 150 and top_left[1] < 80 and top_left[2] < 80, (name, top_left)
    image, target = dataset[by_name["exif.jpg"]]
    assert image.shape == (3, 64, 48)  # displayed orientation
    # After a 90-degree clockwise turn, the red top-left quarter of the stored image is at the top right.
    assert image[0, 5, 40] > 150 and image[0, 5, 5] < 80
    assert target["boxes"].tolist() == [[2.0, 2.0, 42.0, 62.0]]
    image, target = dataset[by_name["good.jpg"]]
    assert target["labels"].tolist() == [1, 1]  # category 3 -> label 1; the crowd and dropped boxes are gone
    assert target["boxes"].tolist() == [[5.0, 5.0, 25.0, 15.0], [0.0, 40.0, 15.0, 48.0]]
    image, target = dataset[by_name["background.jpg"]]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        assert dataset[by_name["truncated.jpg"]] is None


def test_boxes_of_images_without_a_stated_size_are_repaired_at_first_read(tmp_path: Path) -> None:
    from mobilevision.tasks.detection.data import CocoDetection

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(_jpeg(_rgb()))
    annotations = [
        {"id": i, "image_id": 1, "category_id": 1, "bbox": bbox}
        for i, bbox in enumerate(([1, 1, 10, 10], [60, 40, 20, 20], [100, 100, 5, 5]))
    ]
    _write(
        tmp_path / "a.json",
        {
            "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "x"}],
        },
    )
    dataset = CocoDetection(tmp_path / "images", tmp_path / "a.json")
    for _ in range(2):  # a second epoch does not count again
        _, target = dataset[0]
        assert target["boxes"].tolist() == [[1, 1, 11, 11], [60, 40, 64, 48]]
    assert (dataset.report.extra["dropped_boxes"], dataset.report.extra["clipped_boxes"]) == (1, 1)


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"images": [', "malformed JSON"),
        (
            json.dumps(
                {
                    "images": [{"id": 1, "file_name": "a.jpg"}],
                    "categories": [{"id": 1, "name": "a"}],
                    "annotations": [{"id": 5, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}],
                }
            ),
            "annotation id 5: unknown category id 9",
        ),
        (
            json.dumps(
                {
                    "images": [{"id": 1, "file_name": "a.jpg"}],
                    "categories": [{"id": 1, "name": "a"}],
                    "annotations": [{"id": 6, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1]}],
                }
            ),
            "annotation id 6: unknown image id 42",
        ),
        (json.dumps([1, 2, 3]), "expected a JSON object"),
    ],
)
def test_structural_errors_exit_2_with_the_file_and_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    (tmp_path / "images").mkdir()
    annotations = tmp_path / "bad.json"
    annotations.write_text(content)
    code = cli_main(
        [
            "data",
            "check",
            "--format",
            "coco",
            "--images",
            str(tmp_path / "images"),
            "--annotations",
            str(annotations),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert str(annotations) in captured.err and fragment in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def _voc_xml(objects: list[tuple[str, tuple[int, int, int, int], int]], width: int = 64, height: int = 48) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation>{size}{body}</annotation>"


def test_check_voc_detection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    year = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (year / sub).mkdir(parents=True)
    good = _jpeg(_rgb())
    (year / "JPEGImages" / "000001.jpg").write_bytes(good)
    (year / "Annotations" / "000001.xml").write_text(
        _voc_xml([("dog", (1, 1, 20, 20), 0), ("cat", (5, 5, 30, 30), 1), ("car", (50, 40, 90, 60), 0)])
    )
    (year / "Annotations" / "000002.xml").write_text(_voc_xml([("dog", (1, 1, 20, 20), 0)]))  # image missing
    (year / "JPEGImages" / "000003.jpg").write_bytes(good)
    (year / "Annotations" / "000003.xml").write_text("<annotation><size>")  # malformed XML
    (year / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n")
    code = cli_main(
        ["data", "check", "--format", "voc-det", "--root", str(tmp_path / "VOCdevkit"), "--split", "trainval", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["usable_images"], report["skipped_images"]) == (3, 1, 2)
    counts = (report["clipped_boxes"], report["dropped_boxes"], report["difficult"], report["object_classes"])
    assert counts == (1, 0, 1, 20)
    assert {s["file"] for s in report["skipped"]} == {"VOC2007/JPEGImages/000002.jpg", "VOC2007/JPEGImages/000003.jpg"}
    # A missing split file is structural.
    code = cli_main(["data", "check", "--format", "voc-det", "--root", str(year), "--split", "val"])
    assert code == 2 and "val.txt" in capsys.readouterr().err


def test_check_voc_segmentation_dispatches_to_the_segmentation_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    year = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (year / sub).mkdir(parents=True)
    (year / "JPEGImages" / "a.jpg").write_bytes(_jpeg(_rgb()))
    mask = Image.fromarray(np.zeros((48, 64), np.uint8))
    mask.putpalette([0, 0, 0] * 256)
    mask.save(year / "SegmentationClass" / "a.png")
    (year / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    assert cli_main(["data", "check", "--format", "voc-seg", "--root", str(year), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["usable_images"], report["skipped_images"]) == (2, 1, 1)
