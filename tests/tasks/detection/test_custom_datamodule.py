"""`CustomDetectionDataModule` and `data check --root` on generated user folders."""

from __future__ import annotations

import pytest

from mobilevision.tasks.detection.custom_datamodule import CustomDetectionDataModule
from tests.fixtures.own_data import CLASSES, make_truth, write_voc, write_yolo

pytestmark = pytest.mark.filterwarnings("ignore::mobilevision.data.report.DataWarning")


def test_datamodule_detects_prints_splits_and_writes_lists(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", make_truth(10))
    dm = CustomDetectionDataModule(
        root=str(root), split="every_5th", split_dir=str(tmp_path / "run"), input_size=64, batch_size=2, num_workers=0
    )
    out = capsys.readouterr().out
    assert "format voc" in out and "['cat', 'dog']" in out and "train 8, val 2" in out
    assert dm.num_classes == 3
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape[1:] == (3, 64, 64) and len(targets) == images.shape[0]
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape[0] == 2
    assert (tmp_path / "run" / "splits" / "val.txt").read_text() == "img001.png\nimg006.png\n"
    listed = CustomDetectionDataModule(
        root=str(root),
        train_list=str(tmp_path / "run" / "splits" / "train.txt"),
        val_list=str(tmp_path / "run" / "splits" / "val.txt"),
        names=list(reversed(CLASSES)),
    )
    assert listed.splits.how == "lists" and listed.meta.class_names == ["background", "dog", "cat"]
    assert listed.splits.val.file_names == ["img001.png", "img006.png"]


def test_datamodule_yolo_and_forced_format(tmp_path):
    root = write_yolo(tmp_path / "yolo", make_truth(6))
    dm = CustomDetectionDataModule(root=str(root), format="yolo", num_workers=0)
    assert dm.splits.how == "yaml" and len(dm.splits.train) == 4 and len(dm.splits.val) == 2


def test_data_check_root(tmp_path, capsys):
    from mobilevision.cli.data import check_main

    root = write_yolo(tmp_path / "yolo", make_truth(6))
    assert check_main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "format: yolo" in out and "usable_images            6" in out
    assert check_main(["--root", str(root), "--format", "yolo", "--json"]) == 0


@pytest.mark.parametrize(
    "config", ["detection/ssdlite_mobilenetv2_custom.yaml", "segmentation/deeplabv3_mobilenetv2_custom.yaml"]
)
def test_custom_configs_name_real_arguments(config):
    import importlib
    import inspect
    from pathlib import Path

    import yaml

    import mobilevision

    data = yaml.safe_load((Path(mobilevision.__file__).parent / "configs" / config).read_text())["data"]
    module, _, name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    params = set(inspect.signature(cls.__init__).parameters)
    for parent in cls.__mro__[1:3]:
        params |= set(inspect.signature(parent.__init__).parameters)
    assert set(data["init_args"]) <= params
