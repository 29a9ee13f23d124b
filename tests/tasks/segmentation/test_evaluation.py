"""mIoU and pixel accuracy against an independent count, the null rule, folder errors, the CLI, palette PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevision.cli import main as cli_main
from mobilevision.errors import DatasetError
from mobilevision.tasks.segmentation.evaluation import (
    ConfusionMatrix,
    confusion_matrix,
    evaluate_folders,
    iou_per_class,
    miou,
    pixel_accuracy,
)
from mobilevision.tasks.segmentation.masks import read_index_mask, voc_palette, write_palette_png

C = 6  # class 5 never appears in ground truth or prediction: its IoU must be null


def _independent_scores(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict:
    """Pixel-by-pixel counting with plain Python loops: no bincount, no shared code with the evaluator."""
    tp = [0] * num_classes
    fp = [0] * num_classes
    fn = [0] * num_classes
    correct = total = 0
    for gt, pred in pairs:
        for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist()):
            if g == 255:
                continue
            total += 1
            if g == p:
                tp[g] += 1
                correct += 1
            else:
                fn[g] += 1
                fp[p] += 1
    ious = [None if tp[c] + fp[c] + fn[c] == 0 else tp[c] / (tp[c] + fp[c] + fn[c]) for c in range(num_classes)]
    defined = [v for v in ious if v is not None]
    return {"miou": sum(defined) / len(defined), "pixel_accuracy": correct / total, "iou_per_class": ious}


def _random_pair(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, C - 1, (height, width)).astype(np.uint8)
    gt[rng.random((height, width)) < 0.15] = 255  # void pixels
    pred = gt.copy()
    pred[pred == 255] = rng.integers(0, C - 1)  # whatever is predicted on void must not count
    noise = rng.random((height, width)) < 0.3
    pred[noise] = rng.integers(0, C - 1, int(noise.sum()))
    return gt, pred


def _write_set(tmp_path: Path) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    pairs = []
    for i, (height, width) in enumerate([(17, 23), (40, 31), (8, 8), (25, 50)]):
        gt, pred = _random_pair(i, height, width)
        if i == 2:
            gt[gt == 4] = 0  # one image without class 4 in its ground truth: the count is over the split
        pairs.append((gt, pred))
        write_palette_png(gt_dir / f"img_{i}.png", gt)
        if i % 2:  # predictions as single-channel PNGs: read as indices all the same
            (pred_dir).mkdir(exist_ok=True)
            Image.fromarray(pred).save(pred_dir / f"img_{i}.png")
        else:
            write_palette_png(pred_dir / f"img_{i}.png", pred)
    write_palette_png(pred_dir / "extra_image.png", np.zeros((3, 3), np.uint8))  # not in gt: ignored
    return gt_dir, pred_dir, pairs


def test_evaluate_folders_matches_independent_count(tmp_path: Path) -> None:
    gt_dir, pred_dir, pairs = _write_set(tmp_path)
    result = evaluate_folders(gt_dir, pred_dir, C)
    expected = _independent_scores(pairs, C)
    assert result["images"] == 4
    assert abs(result["miou"] - expected["miou"]) < 1e-6
    assert abs(result["pixel_accuracy"] - expected["pixel_accuracy"]) < 1e-6
    assert expected["iou_per_class"][5] is None and result["iou_per_class"][5] is None
    for got, want in zip(result["iou_per_class"], expected["iou_per_class"]):
        assert (got is None) == (want is None)
        if want is not None:
            assert abs(got - want) < 1e-6


def test_null_rule_and_mean_over_defined_classes() -> None:
    gt = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 2, 1, 3]])  # class 2 only predicted: IoU 0, not null; class 3 only on void: null
    matrix = confusion_matrix(pred, gt, 4)
    assert matrix.sum() == 3  # the void pixel is not counted
    assert iou_per_class(matrix) == [0.5, 1.0, 0.0, None]
    assert miou(matrix) == pytest.approx(0.5)
    assert pixel_accuracy(matrix) == pytest.approx(2 / 3)


def test_confusion_matrix_accepts_tensors_and_batches() -> None:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 3, (2, 5, 7))
    pred = rng.integers(0, 3, (2, 5, 7))
    accumulator = ConfusionMatrix(3)
    accumulator.update(torch.from_numpy(pred), torch.from_numpy(gt))
    expected = _independent_scores([(gt, pred)], 3)
    assert abs(accumulator.compute()["miou"] - expected["miou"]) < 1e-9
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(np.zeros(3), np.zeros(4), 3)


def test_missing_prediction_is_an_error_naming_the_file(tmp_path: Path) -> None:
    gt_dir, pred_dir, _ = _write_set(tmp_path)
    (pred_dir / "img_2.png").unlink()
    with pytest.raises(DatasetError, match="img_2.png"):
        evaluate_folders(gt_dir, pred_dir, C)


def test_mis_sized_prediction_is_an_error_naming_the_file(tmp_path: Path) -> None:
    gt_dir, pred_dir, _ = _write_set(tmp_path)
    write_palette_png(pred_dir / "img_1.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"img_1\.png.*5x5"):
        evaluate_folders(gt_dir, pred_dir, C)


def test_out_of_range_and_colour_masks_are_errors(tmp_path: Path) -> None:
    gt_dir, pred_dir, _ = _write_set(tmp_path)
    with pytest.raises(DatasetError, match="outside 0..2"):
        evaluate_folders(gt_dir, pred_dir, 3)
    Image.new("RGB", (23, 17)).save(pred_dir / "img_0.png")
    with pytest.raises(DatasetError, match="img_0.png.*colour-coded"):
        evaluate_folders(gt_dir, pred_dir, C)


def test_cli_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, pred_dir, pairs = _write_set(tmp_path)
    args = ["evaluate", "segmentation", "--gt", str(gt_dir), "--predictions", str(pred_dir), "--num-classes", str(C)]
    assert cli_main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"miou", "pixel_accuracy", "iou_per_class"}
    assert printed["iou_per_class"][5] is None
    assert abs(printed["miou"] - _independent_scores(pairs, C)["miou"]) < 1e-6
    assert cli_main(args) == 0
    table = capsys.readouterr().out
    assert "mIoU" in table and "class 5" in table

    (pred_dir / "img_3.png").unlink()
    assert cli_main(args) == 2
    assert "img_3.png" in capsys.readouterr().err
    assert cli_main(["evaluate", "segmentation", "--gt", str(gt_dir)]) == 2  # missing required options


def test_palette_png_roundtrip_is_atomic_and_uses_voc_colours(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2], [15, 255, 20]], np.uint8)
    target = tmp_path / "out" / "pred.png"
    write_palette_png(target, torch.from_numpy(mask).long())
    assert [p.name for p in target.parent.iterdir()] == ["pred.png"]  # no temporary file left behind
    with Image.open(target) as image:
        assert image.mode == "P"
        rgb = np.asarray(image.convert("RGB"))
    assert rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 1].tolist() == [224, 224, 192]  # aeroplane, void
    assert np.array_equal(read_index_mask(target), mask)
    assert voc_palette()[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # person
    with pytest.raises(ValueError, match="2-D"):
        write_palette_png(target, np.zeros((2, 2, 3), np.uint8))
