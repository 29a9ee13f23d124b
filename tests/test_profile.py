from __future__ import annotations

import json

import torch

from mobilevision.cli import main


def test_profile_json_lists_paper_rows(capsys) -> None:
    assert main(["profile", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    tables = {r["table"] for r in rows}
    assert {"4", "5", "6", "7"} <= tables
    ssdlite = next(r for r in rows if r["table"] == "6")
    assert abs(ssdlite["madds_diff_pct"]) < 5 and abs(ssdlite["params_diff_pct"]) < 3
    heads = [r for r in rows if r["table"] == "5"]
    assert len(heads) == 2 and heads[0]["params_m"] > 5 * heads[1]["params_m"]


def test_profile_one_configuration(capsys) -> None:
    assert main(["profile", "--model", "deeplabv3_mobilenet_v2", "--input-size", "129", "--output-stride", "8"]) == 0
    out = capsys.readouterr().out
    assert "deeplabv3_mobilenet_v2 (output_stride=8)" in out and "129" in out


def test_joint_model_beside_the_two_it_replaces() -> None:
    from mobilevision.profile import _build_meta, count_madds, joint_rows

    joint, detector, segmenter, both = joint_rows(160, num_classes=5, mask_classes=3, width_mult=0.5)
    assert "ssdlite_deeplabv3_mobilenet_v2" in joint.name and both.name == "detector + segmenter"
    assert (
        both.madds_b == detector.madds_b + segmenter.madds_b and both.params_m == detector.params_m + segmenter.params_m
    )
    # One backbone pass: cheaper than the pair, dearer than either alone (both heads are counted, not just boxes).
    assert max(detector.madds_b, segmenter.madds_b) < joint.madds_b < both.madds_b

    class BoxesOnly(torch.nn.Module):  # the joint model's detector surface alone
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor):
            return self.model.detector.forward_raw(x)

    model = _build_meta("ssdlite_deeplabv3_mobilenet_v2", num_classes=5, seg_num_classes=3, width_mult=0.5)
    assert joint.madds_b * 1e9 > count_madds(BoxesOnly(model), 160)


def test_profile_lists_the_joint_rows(capsys) -> None:
    assert main(["profile", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["table"] == "joint"]
    assert [r["input_size"] for r in rows] == [320] * 4 and rows[-1]["name"] == "detector + segmenter"


def test_profile_lists_mobilenet_v3_beside_torchvision(capsys) -> None:
    assert main(["profile", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out) if r["table"] == "v3"}
    torchvision_ssd = rows["torchvision ssdlite320_mobilenet_v3_large"]
    # Counted in the same run, torchvision's own model reproduces its published 3.44M params and 0.58 GFLOPS.
    assert abs(torchvision_ssd["params_diff_pct"]) < 1 and abs(torchvision_ssd["madds_diff_pct"]) < 2
    assert "ssdlite_mobilenet_v3_large" in rows and "torchvision lraspp_mobilenet_v3_large" in rows
    assert "torchvision deeplabv3_mobilenet_v3_large" in rows
