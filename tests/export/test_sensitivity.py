"""`--int8-keep-float auto`: layer groups from the exported graph's node names, the greedy search's logic (on a
made-up cost, so every branch is checked exactly), and the search run by onnxruntime's quantizer on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import onnx
import pytest

from mobilevision.benchmarks.images import photo_like_images
from mobilevision.export import sensitivity
from mobilevision.export.sensitivity import group_of, layer_groups, search_keep_float
from tests.inference.models_for_tests import segmenter_meta, small_segmenter


def test_group_of_node_names() -> None:
    assert group_of("/backbone/features.8/conv/conv.0/conv.0.0/Conv") == "backbone/features.8"
    assert group_of("/cls_heads.3/cls_heads.3.1/Conv") == "cls_heads.3"
    assert group_of("/extra.0/extra.0.0/extra.0.0.0/Conv") == "extra.0"
    assert group_of("/seg_head/project/project.0/Conv") == "seg_head/project"
    assert group_of("/seg_head/Conv") == "seg_head"
    assert group_of("/Concat") is None and group_of("Conv_3") is None


def _groups() -> dict[str, list[str]]:
    return {name: [f"/{name}/a/Conv", f"/{name}/b/Conv"] for name in ("stem", "b1", "b2", "b3", "head")}


def _search(costs: dict[str, float], tolerance: float, max_groups: int | None = None) -> tuple[object, list]:
    """A model whose error is 0.01 plus the costs of the groups quantized (errors that do add up here)."""
    groups, excluded = _groups(), []

    def quantize(_model: Path, out: Path, exclude: list[str]) -> None:
        excluded.append(exclude)
        out.write_text(json.dumps(exclude))

    def error(path: Path) -> float:
        kept = {name.split("/")[1] for name in json.loads(path.read_text())} - {"fixed"}
        return 0.01 + sum(cost for name, cost in costs.items() if name not in kept)

    result = search_keep_float(
        "model.onnx", quantize, error, groups, fixed=["/fixed/Conv"], tolerance=tolerance, max_groups=max_groups
    )
    return result, excluded


def test_search_keeps_the_costliest_groups_until_within_tolerance() -> None:
    costs = {"stem": 0.3, "b1": 0.01, "b2": 0.1, "b3": 0.0, "head": 0.2}
    # 0.62 with every group quantized -> 0.32 (stem float) -> 0.12 (and head) -> 0.02 (and b2).
    result, _ = _search(costs, tolerance=0.1, max_groups=5)
    assert result.kept == ["stem", "head", "b2"] and abs(result.error - 0.02) < 1e-9
    result, excluded = _search(costs, tolerance=0.13, max_groups=5)
    assert result.kept == ["stem", "head"] and abs(result.error - 0.12) < 1e-9
    assert "/stem/a/Conv" in result.nodes and "/fixed/Conv" in result.nodes
    assert all("/fixed/Conv" in nodes for nodes in excluded)  # the user's own nodes stay float in every trial
    assert result.trials == 1 + 5 + 1  # all int8, one per group, then stem+head (stem alone was a ranking trial)
    assert abs(result.error_all_int8 - 0.62) < 1e-9 and result.ranking["b3"] > result.ranking["stem"]
    assert any("kept in float: stem, head" in line for line in result.lines())


def test_search_stops_at_once_when_within_tolerance_and_caps_the_kept_groups() -> None:
    result, excluded = _search({"stem": 0.01}, tolerance=0.05)
    assert result.kept == [] and result.nodes == ["/fixed/Conv"] and len(excluded) == 1
    costs = {"stem": 0.3, "b1": 0.2, "b2": 0.1, "b3": 0.05, "head": 0.04}
    result, _ = _search(costs, tolerance=0.0, max_groups=2)
    assert result.kept == ["stem", "b1"] and result.error > result.tolerance
    assert any("NOT within" in line for line in result.lines())


@pytest.mark.slow  # six quantizations, ~4 s each here
def test_auto_search_on_a_tiny_segmenter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilevision.export.onnx import export_onnx, read_metadata
    from mobilevision.export.quantize import OP_TYPES, QUANTIZATION_KEY, quantize_onnx

    paths = []
    for i, image in enumerate(photo_like_images(4, (64, 64), seed=4)):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    fp32 = export_onnx(small_segmenter(), tmp_path / "seg.onnx", segmenter_meta(input_size=(64, 64)))
    groups = layer_groups(onnx.load(str(fp32)), OP_TYPES)
    assert "stem" in groups and len(groups) > 5
    # Four groups keep it fast (each trial is one quantization): the stem, a block, the head's two convolutions.
    few = {k: groups[k] for k in [*list(groups)[:2], *list(groups)[-2:]]}
    monkeypatch.setattr(sensitivity, "layer_groups", lambda *_: few)
    groups = few
    lines: list[str] = []
    # A tolerance no int8 model meets: the search ranks every group and keeps the allowed quarter of them.
    int8 = quantize_onnx(
        fp32,
        tmp_path / "seg.int8.onnx",
        paths[:2],
        keep_float=["auto"],
        search_images=paths[2:],
        tolerance=0.0,
        log=lines.append,
    )
    recorded = read_metadata(int8)[1][QUANTIZATION_KEY]
    record = json.loads(recorded) if isinstance(recorded, str) else recorded
    auto = record["auto"]
    assert auto["held_out_images"] == 2 and auto["trials"] >= 1 + len(groups)
    assert 1 <= len(auto["groups"]) <= len(groups) // 4 and auto["error"] <= auto["error_all_int8"]
    assert record["kept_float"] and all(group_of(n) for n in record["kept_float"])
    assert any(line.startswith("int8 sensitivity") for line in lines)


@pytest.mark.slow  # an export with its parity checks (~10-17 s here)
def test_export_cli_auto_within_tolerance_keeps_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilevision.checkpoint import save_checkpoint
    from mobilevision.cli import main
    from tests.inference.models_for_tests import detector_meta, small_detector

    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, image in enumerate(photo_like_images(4, (96, 96), seed=6)):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    ckpt = save_checkpoint(tmp_path / "det.ckpt", small_detector(), detector_meta(input_size=(96, 96)))
    args = ["export", "--weights", str(ckpt), "--int8", "--calibration", str(folder), "--calibration-images", "2"]
    assert main([*args, "--int8-keep-float", "auto", "--int8-tolerance", "10"]) == 0
    out = capsys.readouterr().out
    # 2 calibration images, the folder's other 2 measure the error; one quantization, within tolerance.
    assert "1 quantizations measured" in out and "kept in float: none" in out and "(within tolerance 10)" in out
