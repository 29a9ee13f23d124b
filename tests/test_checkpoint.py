from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mobilevision.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mobilevision.errors import WeightsError
from tests.inference.models_for_tests import (
    detector_meta,
    random_image,
    segmenter_meta,
    small_detector,
    small_segmenter,
)


class _Evil:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(tmp_path: Path, suffix: str = ".ckpt") -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / f"evil{suffix}"
    model = small_detector(force=False)
    torch.save(
        {
            "mobilevision": detector_meta().to_dict(),
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"payload": _Evil(marker)},
        },
        path,
    )
    return path, marker


def test_meta_round_trip() -> None:
    meta = detector_meta()
    again = ModelMeta.from_dict(meta.to_dict())
    assert again == meta
    assert again.num_classes == 4 and again.input_size == (160, 160)


def test_meta_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="task"):
        ModelMeta(task="keypoints", model_name="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="category_ids"):
        ModelMeta(task="detection", model_name="x", class_names=["bg", "a"], category_ids=[0])
    with pytest.raises(WeightsError, match="lacks"):
        ModelMeta.from_dict({"task": "detection"})


def test_save_and_load_detector(tmp_path: Path) -> None:
    model = small_detector()
    path = save_checkpoint(tmp_path / "det.ckpt", model, detector_meta())
    loaded, meta = load_checkpoint(path)
    assert meta == detector_meta()
    assert not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob(".*tmp*")), "the atomic write left a temporary file"


def test_save_and_load_segmenter(tmp_path: Path) -> None:
    model = small_segmenter()
    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "seg.pt", model, segmenter_meta()))
    x = torch.from_numpy(random_image(64, 64)).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    assert meta.task == "segmentation"


def test_ema_weights_are_preferred(tmp_path: Path) -> None:
    model, ema = small_detector(seed=0, force=False), small_detector(seed=1, force=False)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "ema.ckpt", model, detector_meta(), ema_model=ema))
    key = "head.cls_heads.0.1.weight"
    assert torch.equal(loaded.state_dict()[key], ema.state_dict()[key])
    assert not torch.equal(loaded.state_dict()[key], model.state_dict()[key])


def test_plain_state_dict_is_refused_with_a_pointer(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(small_detector(force=False).state_dict(), path)
    with pytest.raises(WeightsError, match="mobilevision checkpoint") as info:
        load_checkpoint(path)
    assert "--model NAME" in str(info.value)


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "det.ckpt", small_detector(num_classes=4), detector_meta(num_classes=4))
    payload = torch.load(path, weights_only=True)
    payload["mobilevision"]["model_kwargs"]["num_classes"] = 6
    payload["mobilevision"]["class_names"] = [f"c{i}" for i in range(6)]
    payload["mobilevision"]["category_ids"] = list(range(6))
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="do not fit"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_garbage_and_missing_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.ckpt"):
        load_checkpoint(path)
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_pickled_code_never_runs_load_checkpoint(tmp_path: Path) -> None:
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(WeightsError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_code_never_runs_predictor(tmp_path: Path) -> None:
    from mobilevision.inference.predictor import Predictor

    path, marker = _evil_checkpoint(tmp_path, ".pt")
    with pytest.raises(WeightsError):
        Predictor(path)
    assert not marker.exists()


def test_pickled_code_never_runs_predict_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilevision.cli import main
    from mobilevision.inference.draw import write_image

    path, marker = _evil_checkpoint(tmp_path)
    write_image(tmp_path / "img.png", random_image())
    code = main(
        [
            "predict",
            "--weights",
            str(path),
            "--source",
            str(tmp_path / "img.png"),
            "--output",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "evil.ckpt" in err and "Traceback" not in err
    assert not marker.exists()
    # The same payload passed to `--model NAME --weights FILE` goes through the weights-only loader too.
    code = main(
        [
            "predict",
            "--model",
            "ssdlite_mobilenet_v2",
            "--num-classes",
            "4",
            "--width-mult",
            "0.35",
            "--weights",
            str(path),
            "--source",
            str(tmp_path / "img.png"),
            "--output",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 2 and not marker.exists()


def test_real_lightning_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    """A checkpoint written by Lightning's Trainer (optimizer and scheduler states, callbacks, loops,
    hyper-parameters) loads through the weights-only path."""
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    meta = detector_meta()

    class Tiny(lightning.LightningModule):
        def __init__(self, lr: float = 0.01, classes: tuple[str, ...] = ("a", "b")) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = small_detector(force=False)

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            raw, _anchors = self.model.forward_raw(batch[0])
            return raw["cls_logits"].float().logsumexp(-1).mean()

        def configure_optimizers(self):  # noqa: ANN202
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

        def on_save_checkpoint(self, checkpoint: dict) -> None:
            checkpoint["mobilevision"] = meta.to_dict()

    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8).float()
    trainer = lightning.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)],
    )
    module = Tiny()
    trainer.fit(module, DataLoader(TensorDataset(images), batch_size=2))
    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert {"optimizer_states", "lr_schedulers", "callbacks", "loops", "hyper_parameters"} <= set(raw)
    model, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    key = "head.cls_heads.0.1.weight"
    assert torch.equal(model.state_dict()[key], module.model.state_dict()[key])
    # The checkpoint ModelCheckpoint wrote on its own loads too.
    model, _ = load_checkpoint(tmp_path / "ckpts" / "last.ckpt")
