from __future__ import annotations

import pytest
import torch

from mobilevision.inference.optimize import fold_batchnorm, optimize_for_cpu
from tests.inference.models_for_tests import random_image, small_detector, small_segmenter


def _randomise_bn(model: torch.nn.Module) -> None:
    # Fresh BatchNorms are identities; give them real statistics so folding is actually tested.
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_folded_detector_gives_the_same_raw_outputs() -> None:
    model = small_detector()
    _randomise_bn(model)
    fast = optimize_for_cpu(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original must be untouched"
    x = torch.from_numpy(random_image(128, 128)).permute(2, 0, 1)[None]
    with torch.no_grad():
        a, _ = model.forward_raw(x)
        b, _ = fast.forward_raw(x)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=1e-4), key


def test_folded_segmenter() -> None:
    model = small_segmenter()
    _randomise_bn(model)
    folded = optimize_for_cpu(model, channels_last=False)
    x = torch.from_numpy(random_image(64, 64)).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-4)


def test_folding_needs_eval_mode() -> None:
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(small_detector().train())
