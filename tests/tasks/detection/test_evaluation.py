"""COCO evaluation: the 12 numbers equal pycocotools' COCOeval run directly (crowd, empty images, non-contiguous
category ids), the results plumbing, and clear errors for unknown image ids and malformed files."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mobilevision.cli import main as cli_main
from mobilevision.errors import DatasetError
from mobilevision.tasks.detection.data import DetectionMeta, coco_from_dict
from mobilevision.tasks.detection.evaluation import (
    STAT_NAMES,
    evaluate_coco,
    rescale_boxes,
    to_coco_results,
    write_coco_results,
)

CATEGORIES = [{"id": 2, "name": "bicycle"}, {"id": 5, "name": "bus"}, {"id": 11, "name": "hydrant"}]


def make_case(seed: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth over 12 images (two without annotations, crowd regions, small to large boxes) and noisy results
    with misses, false positives, wrong classes and detections on the empty images."""
    rng = np.random.default_rng(seed)
    images = [{"id": 100 + i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(12)]
    annotations, results = [], []
    for image in images[:10]:
        for _ in range(int(rng.integers(1, 7))):
            size = float(np.exp(rng.uniform(np.log(8), np.log(300))))
            w, h = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            category = int(rng.choice([2, 5, 11]))
            crowd = int(rng.random() < 0.1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h * 0.8,
                    "iscrowd": crowd,
                }
            )
            if rng.random() < 0.85:
                dx, dy, dw, dh = rng.normal(0, 0.08 * size, 4)
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": category if rng.random() < 0.9 else int(rng.choice([2, 5, 11])),
                        "bbox": [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)],
                        "score": float(rng.uniform(0.05, 1.0)),
                    }
                )
    for image in images:
        for _ in range(int(rng.integers(0, 4))):  # false positives everywhere, including the empty images
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice([2, 5, 11])),
                    "bbox": [float(rng.uniform(0, 500)), float(rng.uniform(0, 400)), 40.0, 30.0],
                    "score": float(rng.uniform(0.0, 0.6)),
                }
            )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}, results


def pycocotools_direct(gt_file: Path, results_file: Path) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(results_file))
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pycocotools(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = make_case(seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    gt_file, results_file = tmp_path / "gt.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps(gt))
    write_coco_results(results_file, results)
    reference = pycocotools_direct(gt_file, results_file)
    ours = evaluate_coco(coco_from_dict(json.loads(gt_file.read_text())), json.loads(results_file.read_text()))
    assert capsys.readouterr().out == ""  # COCOeval's prints are silenced
    for name, value in zip(STAT_NAMES, reference.stats):
        assert abs(ours[name] - value) < 1e-6, name
    precision = reference.eval["precision"]
    for k, row in enumerate(ours["per_class"]):
        p = precision[:, :, k, 0, -1]
        assert row["category_id"] == CATEGORIES[k]["id"] and row["name"] == CATEGORIES[k]["name"]
        assert abs(row["ap"] - p[p > -1].mean()) < 1e-9
    # The command line gives the same 12 numbers, and only those, with --json.
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(results_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(STAT_NAMES)
    for name, value in zip(STAT_NAMES, reference.stats):
        assert abs(printed[name] - value) < 1e-6, name
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(results_file)]) == 0
    assert "hydrant" in capsys.readouterr().out


def test_unknown_image_id_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = make_case()
    results.append({"image_id": 999, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5})
    with pytest.raises(DatasetError, match="image id 999"):
        evaluate_coco(coco_from_dict(gt), results)
    gt_file, results_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt))
    results_file.write_text(json.dumps(results))
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(results_file)]) == 2
    err = capsys.readouterr().err
    assert "image id 999" in err and str(results_file) in err and "Traceback" not in err


def test_malformed_files_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = make_case()
    gt_file, bad = tmp_path / "gt.json", tmp_path / "bad.json"
    gt_file.write_text(json.dumps(gt))
    bad.write_text('[{"image_id": 100,')
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(bad)]) == 2
    assert f"{bad}: malformed JSON" in capsys.readouterr().err
    assert cli_main(["evaluate", "detection", "--gt", str(bad), "--predictions", str(gt_file)]) == 2
    assert f"{bad}: malformed JSON" in capsys.readouterr().err
    bad.write_text(json.dumps([{"image_id": 100, "category_id": 2, "bbox": [1, 2, 3], "score": 1.0}]))
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(bad)]) == 2
    assert "'bbox'" in capsys.readouterr().err


def test_empty_results_score_zero() -> None:
    gt, _ = make_case()
    metrics = evaluate_coco(coco_from_dict(gt), [], per_class=False)
    assert metrics["map"] == 0.0 and metrics["mar_100"] == 0.0 and "per_class" not in metrics


def test_model_outputs_to_results_round_trip(tmp_path: Path) -> None:
    meta = DetectionMeta.from_categories(CATEGORIES)
    boxes_320 = torch.tensor([[32.0, 64.0, 96.0, 160.0]])
    boxes = rescale_boxes(boxes_320, (320, 320), (480, 640))
    assert boxes.tolist() == [[64.0, 96.0, 192.0, 240.0]]
    detections = [
        {"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([3])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    results = to_coco_results(detections, [100, 101], meta)
    assert results == [{"image_id": 100, "category_id": 11, "bbox": [64.0, 96.0, 128.0, 144.0], "score": 0.9}]
    # Under bf16-mixed precision the model's boxes and scores are bfloat16, which NumPy cannot hold.
    low = [{k: v.bfloat16() if v.is_floating_point() else v for k, v in d.items()} for d in detections]
    (result,) = to_coco_results(low, [100, 101], meta)
    assert result == {**results[0], "score": pytest.approx(0.9, abs=4e-3)}  # bfloat16 keeps 8 bits of mantissa
    path = write_coco_results(tmp_path / "out" / "results.json", results)
    assert json.loads(path.read_text()) == results
    assert not [p for p in path.parent.iterdir() if p.name != "results.json"]


def _xyxy(results: list[dict]) -> list[dict]:
    return [
        {**r, "bbox": [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]}
        for r in results
    ]


def _normalised(gt: dict, results: list[dict]) -> list[dict]:
    sizes = {i["id"]: (i["width"], i["height"]) for i in gt["images"]}
    out = []
    for r in results:
        w, h = sizes[r["image_id"]]
        x, y, bw, bh = r["bbox"]
        out.append({**r, "bbox": [x / w, y / h, bw / w, bh / h]})
    return out


def _label_indices(results: list[dict]) -> list[dict]:
    index = {2: 0, 5: 1, 11: 3}  # 0..K-1 positions instead of the dataset's ids (3 is not an id either)
    return [{**r, "category_id": index[r["category_id"]]} for r in results]


@pytest.mark.parametrize(
    ("mistake", "fragment"),
    [
        (lambda gt, res: [], "empty list"),
        (lambda gt, res: _xyxy(res), "look like [x1, y1, x2, y2]"),
        (_normalised, "look normalised"),
        (lambda gt, res: _label_indices(res), "no prediction's category_id is a ground-truth category"),
    ],
    ids=["empty", "xyxy", "normalised", "label indices"],
)
def test_format_mistakes_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mistake, fragment
) -> None:
    gt, results = make_case()
    gt_file, results_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt))
    results_file.write_text(json.dumps(mistake(gt, results)))
    assert cli_main(["evaluate", "detection", "--gt", str(gt_file), "--predictions", str(results_file)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and fragment in warnings[0], err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_results_give_no_format_warning(seed: int) -> None:
    from mobilevision.tasks.detection.evaluation import results_warnings

    gt, results = make_case(seed)
    assert results_warnings(coco_from_dict(gt), results) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_backend_gives_pycocotools_numbers(
    tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, results = make_case(seed)
    gt_file, results_file = tmp_path / "gt.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps(gt))
    write_coco_results(results_file, results)
    reference = pycocotools_direct(gt_file, results_file)
    fast = evaluate_coco(coco_from_dict(gt), results, backend="faster")
    assert capsys.readouterr().out == ""
    for name, value in zip(STAT_NAMES, reference.stats):
        assert abs(fast[name] - value) < 1e-9, name
    slow = evaluate_coco(coco_from_dict(gt), results)
    assert [row["ap"] for row in fast["per_class"]] == pytest.approx([row["ap"] for row in slow["per_class"]], abs=1e-9)
    assert (
        cli_main(
            [
                "evaluate",
                "detection",
                "--gt",
                str(gt_file),
                "--predictions",
                str(results_file),
                "--json",
                "--backend",
                "faster",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert [printed[name] for name in STAT_NAMES] == pytest.approx(list(reference.stats), abs=1e-6)
