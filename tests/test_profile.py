from __future__ import annotations

import json

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
