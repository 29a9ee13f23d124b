"""The LightningCLI entry: every config instantiates; fast runs; checkpoints; exact resume; DDP equals one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from mobilevision.checkpoint import load_checkpoint
from mobilevision.configs import config_paths
from mobilevision.data.shapes import generate_shapes
from mobilevision.training import run_cli
from tests.fixtures.own_data import make_truth, write_coco

REPO = Path(__file__).resolve().parents[1]
CONFIGS = config_paths()
DET_SHAPES = REPO / "configs/detection/ssdlite_mobilenetv2_shapes.yaml"
SEG_SHAPES = REPO / "configs/segmentation/deeplabv3_mobilenetv2_shapes.yaml"
MT_SHAPES = REPO / "configs/multitask/ssdlite_deeplabv3_shapes.yaml"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("mobilevision")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mobilevision.cli"]


def _tiny_shapes(root: Path, *, num_train: int = 20, num_val: int = 8, size: int = 96) -> list[str]:
    """Overrides that shrink a shapes config to seconds of work in `root`."""
    return [
        f"--data.init_args.root={root}",
        f"--data.init_args.num_train={num_train}",
        f"--data.init_args.num_val={num_val}",
        f"--data.init_args.image_size=[{size},{size}]",
        f"--data.init_args.input_size={size}",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--model.init_args.width_mult=0.35",
        "--trainer.max_time=null",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny COCO 2017 layout (images from the shapes generator)."""
    root = tmp_path_factory.mktemp("coco")
    shapes = generate_shapes(root / "shapes", num_images=4, seed=3, image_size=(64, 64))
    (root / "annotations").mkdir()
    for split in ("train", "val"):
        shutil.copytree(shapes.images, root / f"{split}2017")
        shutil.copy(shapes.annotations, root / "annotations" / f"instances_{split}2017.json")
    return root


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty VOCdevkit layout: what the VOC DataModules check at construction (no image is read there)."""
    root = tmp_path_factory.mktemp("voc") / "VOCdevkit"
    for folder in (
        "VOC2007/Annotations",
        "VOC2007/ImageSets/Main",
        "VOC2007/JPEGImages",
        "VOC2012/JPEGImages",
        "VOC2012/SegmentationClass",
        "VOC2012/ImageSets/Segmentation",
    ):
        (root / folder).mkdir(parents=True)
    (root / "VOC2007/ImageSets/Main/test.txt").write_text("")
    (root / "VOC2012/ImageSets/Segmentation/val.txt").write_text("")
    return root


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Stands in for torchvision's IMAGENET1K_V1 (no download here): the same keys and shapes, from a local file.
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    return path


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_instantiates(
    config: Path, tmp_path: Path, coco_root: Path, voc_root: Path, imagenet_file: Path
) -> None:
    text = config.read_text()
    args = ["-c", str(config), f"--trainer.default_root_dir={tmp_path}"]
    if "accelerator: gpu" in text:
        # The GPU recipes, on this CPU machine: same strategy and SyncBatchNorm, two CPU processes, fp32.
        args += ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.precision=32-true"]
    if "backbone_weights: IMAGENET1K_V1" in text:
        args.append(f"--model.init_args.backbone_weights={imagenet_file}")
    if "CocoDataModule" in text:
        args.append(f"--data.init_args.root={coco_root}")
    if "CocoVocMultiTaskDataModule" in text:  # the shapes-made COCO has no VOC class to map VOC's boxes into
        args += [f"--data.init_args.root={coco_root}", "--data.init_args.voc_root=null"]
    if "VOCDataModule" in text or "VOCSegmentationDataModule" in text:
        args.append(f"--data.init_args.root={voc_root}")
    if "COCOSegmentationDataModule" in text:
        args += [
            f"--data.init_args.train_images={coco_root / 'train2017'}",
            f"--data.init_args.train_annotations={coco_root / 'annotations/instances_train2017.json'}",
            f"--data.init_args.voc_root={voc_root}",
        ]
    if any(name in text for name in ("ShapesDataModule", "ShapesSegmentationDataModule", "ShapesMultiTaskDataModule")):
        args.append(f"--data.init_args.root={tmp_path / 'shapes'}")
    if "CustomDetectionDataModule" in text:
        args.append(f"--data.init_args.root={write_coco(tmp_path / 'own', make_truth(n=10))}")
    if "CustomSegmentationDataModule" in text:
        images, masks = tmp_path / "own" / "images", tmp_path / "own" / "masks"
        images.mkdir(parents=True)
        masks.mkdir()
        for i in range(4):
            Image.fromarray(np.full((24, 32, 3), 40 * i, dtype=np.uint8)).save(images / f"{i}.jpg")
            Image.fromarray(np.full((24, 32), i % 2, dtype=np.uint8)).save(masks / f"{i}.png")
        args += [f"--data.init_args.images={images}", f"--data.init_args.masks={masks}"]
    cli = run_cli(args, run=False)
    assert cli.model.model.num_classes == cli.datamodule.num_classes
    assert cli.model.input_size == cli.datamodule.input_size
    assert cli.trainer.checkpoint_callback is not None
    assert Path(cli.trainer.checkpoint_callback.dirpath) == tmp_path / "checkpoints"
    if "backbone_weights: IMAGENET1K_V1" in text:
        reference = torchvision.models.mobilenet_v2().state_dict()
        loaded = torch.load(imagenet_file, weights_only=True)
        first = next(k for k in reference if k.startswith("features.0"))
        assert torch.equal(cli.model.model.backbone.state_dict()[first], loaded[first])


@pytest.mark.parametrize("config", [DET_SHAPES, SEG_SHAPES, MT_SHAPES], ids=["detection", "segmentation", "multitask"])
def test_fast_dev_run_generates_data_and_runs(config: Path, tmp_path: Path) -> None:
    run_cli(
        [
            "fit",
            "-c",
            str(config),
            *_tiny_shapes(tmp_path / "shapes"),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=true",
            "--trainer.logger=false",
        ]
    )
    assert (tmp_path / "shapes" / "train" / "annotations.json").is_file()


def _fit(root: Path, config: Path, *extra: str, steps: int = 15) -> subprocess.CompletedProcess[str]:
    cmd = [
        *_cli(),
        "fit",
        "-c",
        str(config),
        *_tiny_shapes(root / "shapes"),
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.deterministic=true",
        "--checkpoint.every_n_train_steps=3",
        "--trainer.logger=false",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_checkpoint_has_meta_and_predicts(tmp_path: Path) -> None:
    out = _fit(tmp_path, DET_SHAPES, steps=6)
    assert out.returncode == 0, out.stderr[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = _load(last)  # weights_only: the checkpoint holds no pickled objects
    assert checkpoint["global_step"] == 6
    assert checkpoint["mobilevision"]["class_names"][1:] == ["circle", "square", "triangle", "star", "hexagon"]
    model, meta = load_checkpoint(last)
    assert meta.task == "detection" and meta.input_size == (96, 96)
    assert model.num_classes == 6


def _kill_when(process: subprocess.Popen[str], last: Path, step: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training ended before step {step}: {process.stderr.read()[-2000:]}")
        if last.exists():
            try:
                if _load(last)["global_step"] >= step:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return
            except Exception:  # noqa: BLE001 - never a torn file (atomic), but be patient with slow disks
                pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for a checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("config", [DET_SHAPES, SEG_SHAPES, MT_SHAPES], ids=["detection", "segmentation", "multitask"])
def test_sigkill_and_resume_gives_the_same_weights(tmp_path: Path, config: Path) -> None:
    """Kill a real training three times and resume each time with `--ckpt_path last`: the same final state."""
    steps = 15  # 20 images / batch 4 = 5 steps per epoch; checkpoints every 3 steps and at epoch ends
    reference = tmp_path / "reference"
    # Full augmentation and an EMA must come back exactly after a kill, and the dropout masks of the segmentation
    # heads (torch's global generator), and the joint model's learned loss weights.
    extra = ["--model.init_args.ema_decay=0.9"]
    if config != SEG_SHAPES:
        extra.append("--data.init_args.augment=true")
    if config == MT_SHAPES:
        extra.append("--model.init_args.loss_weighting=uncertainty")
    out = _fit(reference, config, *extra, steps=steps)
    assert out.returncode == 0, out.stderr[-3000:]

    resumed = tmp_path / "resumed"
    shutil.copytree(reference / "shapes", resumed / "shapes")  # same data; generation is deterministic anyway
    last = resumed / "checkpoints" / "last.ckpt"
    base = [
        *_cli(),
        "fit",
        "-c",
        str(config),
        *_tiny_shapes(resumed / "shapes"),
        f"--trainer.default_root_dir={resumed}",
        f"--trainer.max_steps={steps}",
        "--trainer.deterministic=true",
        "--checkpoint.every_n_train_steps=3",
        "--trainer.logger=false",
        *extra,
    ]
    # Checkpoints land at steps 3, 5 (epoch end), 6, 9, 10 (epoch end), 12: the kills resume from mid-epoch and,
    # depending on timing, epoch-end checkpoints.
    for i, step in enumerate([3, 7, 10]):
        args = base + (["--ckpt_path=last"] if i else [])
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
        _kill_when(process, last, step)
        assert _load(last)["global_step"] >= step
    out = subprocess.run(base + ["--ckpt_path=last"], capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]

    a, b = _load(reference / "checkpoints" / "last.ckpt"), _load(last)
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"]) == (steps, a["epoch"])
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key  # model and EMA weights, BN statistics
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for index in opt_a:
        for name, value in opt_a[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[index][name])), (index, name)


def _validate(root: Path, config: Path, ckpt: Path, devices: int) -> dict[str, float]:
    cmd = [
        *_cli(),
        "validate",
        "-c",
        str(config),
        *_tiny_shapes(root.parent / "shapes", num_val=10),
        f"--trainer.default_root_dir={root}",
        f"--ckpt_path={ckpt}",
        "--trainer.logger=false",
        f"--trainer.devices={devices}",
        "--trainer.strategy=" + ("ddp" if devices > 1 else "auto"),
        "--data.init_args.batch_size=3",
    ]
    if config == SEG_SHAPES:
        cmd.append("--data.init_args.eval_batch_size=3")
    else:
        # A barely trained detector scores below the usual threshold; keep every candidate so the mAP is not 0.
        cmd.append("--model.init_args.score_threshold=0.0")
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((root / "validate_metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "keys"),
    [(DET_SHAPES, ["val/map"]), (SEG_SHAPES, ["val/miou"]), (MT_SHAPES, ["val/map", "val/miou"])],
    ids=["detection", "segmentation", "multitask"],
)
def test_two_process_ddp_validation_equals_one_process(tmp_path: Path, config: Path, keys: list[str]) -> None:
    out = _fit(tmp_path, config, steps=30)  # enough for a detector to score some boxes right (mAP ~0.01)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    one = _validate(tmp_path / "one", config, ckpt, devices=1)
    two = _validate(tmp_path / "two", config, ckpt, devices=2)
    for key in keys:
        assert one[key] > 0, key
        assert abs(one[key] - two[key]) < 1e-9, (key, one, two)
