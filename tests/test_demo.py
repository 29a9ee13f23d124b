"""`mobilevision demo` end to end on a tiny generated set: the three models trained, evaluated (segmentation also
with MF inference), shown on a video, summarised, and a finished demo started again only re-evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mobilevision import demo as stages
from mobilevision.cli import demo

TINY = [
    "--override=--data.init_args.num_train=12",
    "--override=--data.init_args.num_val=4",
    "--override=--data.init_args.batch_size=4",
    "--override=--trainer.max_steps=3",
]


@pytest.mark.slow
def test_demo_trains_evaluates_and_says_where_everything_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mobilevision.tasks.segmentation import module

    mf_calls: list[tuple[float, ...]] = []

    def counting_mf(model, images, *, scales):  # type: ignore[no-untyped-def]
        mf_calls.append(tuple(scales))
        return multi_scale_flip_probs(model, images, scales=scales)

    multi_scale_flip_probs = module.multi_scale_flip_probs
    monkeypatch.setattr(module, "multi_scale_flip_probs", counting_mf)
    # The demo sets torch's thread count (--threads); the tests after this one keep theirs.
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--data", str(tmp_path / "shapes"), "--minutes", "1", *TINY]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for task in ("detection", "segmentation", "multitask"):
        assert Path(summary[task]["checkpoint"]).is_file()
        assert Path(summary[task]["curve"]).is_file()
        assert (out / task / "fit.done").is_file()
    assert 0.0 <= summary["detection"]["val/map_50"] <= 1.0
    joint = summary["multitask"]
    assert 0.0 <= joint["val/map_50"] <= 1.0 and 0.0 <= joint["val/miou"] <= 1.0
    assert f"mIoU {joint['val/miou']:.3f}   (one backbone pass" in printed
    seg = summary["segmentation"]
    assert 0.0 <= seg["val/miou"] <= 1.0 and 0.0 <= seg["val_mf/miou"] <= 1.0
    # The second evaluation ran the paper's MF inference (4 held-out images, one batch), the first did not.
    assert mf_calls == [(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    for key in (
        "input_video",
        "detection_video",
        "segmentation_video",
        "multitask_video",
        "detection_contact_sheet",
        "multitask_contact_sheet",
    ):
        assert Path(summary["outputs"][key]).exists(), key
    assert f"Outputs in {out}/" in printed and "(MF: scales 0.5-1.75 and flips)" in printed
    assert f"mIoU {seg['val/miou']:.3f}" in printed and f"mIoU {seg['val_mf/miou']:.3f}" in printed

    # Started again, a finished demo does not train again: the checkpoints stay as they were.
    before = {t: (out / t / "checkpoints" / "last.ckpt").stat().st_mtime_ns for t in stages.STAGES}
    assert demo.main([*argv, "--skip-showcase"]) == 0
    assert "training from random weights" not in capsys.readouterr().out
    after = {t: (out / t / "checkpoints" / "last.ckpt").stat().st_mtime_ns for t in stages.STAGES}
    assert after == before
