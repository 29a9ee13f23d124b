"""Shared test settings: one intra-op thread (the CI machine has two cores, and tests may run beside other work)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)


import pytest  # noqa: E402

from tests.fixtures.datasets import Expected, make_coco2017  # noqa: E402
from tests.fixtures.vocdevkit import make_segmentation_class_aug, make_vocdevkit  # noqa: E402


@pytest.fixture(scope="session")
def coco2017(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Expected]]:
    """A miniature COCO 2017 (`annotations/instances_{train,val}2017.json`, `{train,val}2017/`) and its counts."""
    root = tmp_path_factory.mktemp("coco2017")
    return root, make_coco2017(root)


@pytest.fixture(scope="session")
def vocdevkit(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Expected]]:
    """A miniature `VOCdevkit` (VOC2007, VOC2012) with SBD's `benchmark_RELEASE` beside it, and its counts."""
    root = tmp_path_factory.mktemp("voc")
    expected = make_vocdevkit(root)
    return root / "VOCdevkit", expected


@pytest.fixture(scope="session")
def vocdevkit_aug(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, int]:
    """The same VOCdevkit with the SegmentationClassAug variant (and no SBD), and its train_aug size."""
    root = tmp_path_factory.mktemp("voc_aug")
    make_vocdevkit(root)
    import shutil

    shutil.rmtree(root / "benchmark_RELEASE")
    return root / "VOCdevkit", make_segmentation_class_aug(root / "VOCdevkit")
