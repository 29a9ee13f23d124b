"""A converted TF reference DeepLab (the fixture's width 0.5) works like any mobilevision checkpoint: predict,
export to ONNX (with the export's own parity check) and int8."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mobilevision.cli import main

from .test_tf_checkpoint import unpack


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    prefix = unpack("deeplabv3_mnv2_050_os16", root)
    ckpt = root / "deeplab.ckpt"
    assert main(["convert", "tf", str(prefix), "--output", str(ckpt), "--input-size", "64"]) == 0
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (65, 80, 3), dtype=np.uint8))
    return ckpt, images


def test_converted_deeplab_predicts(converted, tmp_path) -> None:
    ckpt, images = converted
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(ckpt), "--source", str(images), "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    assert len(list((out / "masks").glob("*.png"))) == 3


def test_converted_deeplab_exports_with_parity_and_int8(converted, tmp_path) -> None:
    ckpt, images = converted
    onnx = tmp_path / "deeplab.onnx"
    argv = ["export", "--weights", str(ckpt), "--output", str(onnx), "--input-size", "64", "64"]
    assert main([*argv, "--int8", "--calibration", str(images), "--calibration-images", "3"]) == 0
    assert onnx.is_file() and onnx.with_suffix(".int8.onnx").is_file()
    # TF SAME padding depends on size parity, which the trace bakes: exact at every multiple of 16 (what the
    # predictor pads to), here 80 on a graph traced at 64.
    import onnxruntime as ort
    import torch

    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.tasks.segmentation.inference import export_module

    model, _ = load_checkpoint(ckpt)
    session = ort.InferenceSession(str(onnx))
    x = torch.randint(0, 255, (1, 3, 80, 80)).float()
    with torch.no_grad():
        expected = export_module(model)(x)[0].numpy()  # the exported surface: logits at the output stride
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_converted_deeplab_fine_tunes_with_init_from(converted, tmp_path) -> None:
    import lightning.pytorch as pl
    import torch

    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.tasks.segmentation.module import SegmentationTask

    ckpt, _ = converted
    source, _ = load_checkpoint(ckpt)
    task = SegmentationTask(num_classes=21, width_mult=0.5, tf_exact=True, init_from=str(ckpt), input_size=64)
    images = torch.randint(0, 255, (4, 3, 64, 64)).float()
    with torch.no_grad():
        torch.testing.assert_close(task.model.eval()(images), source(images))  # starts as the converted model
    task.model.train()
    masks = torch.randint(0, 21, (4, 64, 64))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, masks), batch_size=2)
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(task, train_dataloaders=data)
    assert trainer.global_step == 2
    moved = [float((a.detach() - b).abs().max()) for a, b in zip(task.model.parameters(), source.parameters())]
    assert max(moved) > 0


def test_converted_deeplab_fine_tunes_on_another_class_list(converted) -> None:
    import torch

    from mobilevision.checkpoint import load_checkpoint
    from mobilevision.tasks.segmentation.module import SegmentationTask

    ckpt, _ = converted
    source, _ = load_checkpoint(ckpt)
    with pytest.warns(UserWarning, match="class-specific tensors have another class count"):
        task = SegmentationTask(num_classes=3, width_mult=0.5, tf_exact=True, init_from=str(ckpt), input_size=64)
    own, theirs = task.model.state_dict(), source.state_dict()
    assert own["head.classifier.weight"].shape[0] == 3
    assert all(torch.equal(own[k], theirs[k]) for k in own if not k.startswith("head.classifier."))


def test_converted_classifier_predicts_and_exports(tmp_path, converted) -> None:
    import json

    from mobilevision.checkpoint import load_checkpoint

    _, images = converted
    ckpt = tmp_path / "classifier.ckpt"
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    assert main(["convert", "tf", str(prefix), "--output", str(ckpt), "--input-size", "128"]) == 0
    model, meta = load_checkpoint(ckpt)
    assert meta.task == "classification" and meta.class_names[1] == "goldfish" and meta.input_size == (128, 128)
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(ckpt), "--source", str(images), "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 3 * 5 and all(0 <= p["category_id"] < 1000 for p in predictions)
    onnx = tmp_path / "classifier.onnx"
    argv = ["export", "--weights", str(ckpt), "--output", str(onnx)]
    assert main([*argv, "--int8", "--calibration", str(images), "--calibration-images", "3"]) == 0
    assert onnx.with_suffix(".int8.onnx").is_file()


def test_converted_deeplab_masks_keep_the_reference_upsampling(converted) -> None:
    """The Predictor's mask of an input-sized image is the argmax of the model's own (corner-aligned) upsampling:
    the one-pass post-processing, which upsamples without aligned corners, does not replace it."""
    import torch

    from mobilevision import Predictor
    from mobilevision.checkpoint import load_checkpoint

    ckpt, _ = converted
    model, _ = load_checkpoint(ckpt)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = model(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].argmax(0).numpy()
    assert (Predictor(str(ckpt))(image)["mask"] == expected).mean() >= 0.999
