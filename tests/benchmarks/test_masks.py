"""`benchmark masks`: its reference post-processing and its report (the run itself builds paper-size models: not
in the fast suite)."""

from __future__ import annotations

import pytest
import torch

from mobilevision.benchmarks.masks import full_mask, main, report
from mobilevision.tasks.segmentation.inference import segmentation_mask


def test_full_reference_equals_the_post_processing_in_both_layouts() -> None:
    logits = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(0)) * 3
    channels_last = logits.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # a torch backend's output layout
    for canvas in (None, (96, 128)):
        expected = segmentation_mask(logits, (90, 120), canvas=canvas)
        assert torch.equal(full_mask(logits, (90, 120), canvas), expected)
        assert torch.equal(full_mask(channels_last, (90, 120), canvas), expected)


def test_report_says_met_only_when_every_row_is() -> None:
    row = {
        "model": "m",
        "setting": "resize 384",
        "backend": "torch",
        "forward_ms": 10.0,
        "post_ms": 1.0,
        "end_to_end_ms": 12.0,
        "ratio": 1.2,
        "full_ms": 5.0,
        "agreement": 1.0,
        "mask_classes": 3,
    }
    assert report({"rows": [row]}).endswith(": met on every row")
    assert "not met" in report({"rows": [row, {**row, "ratio": 1.3}]})


def test_bad_options_exit_2() -> None:
    with pytest.raises(SystemExit) as error:
        main(["--repeats", "0"])
    assert error.value.code == 2
