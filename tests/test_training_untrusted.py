"""`fit` / `validate` with a checkpoint whose pickle runs code: refused in one line naming the file, exit 2, no
traceback, and the payload never runs. Real subprocesses through the `mobilevision` console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DET_SHAPES = REPO / "configs/detection/ssdlite_mobilenetv2_shapes.yaml"


class _Payload:
    """Unpickling this calls os.system(command): what a hostile checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    # Shaped like a Lightning checkpoint so nothing but the payload can be the reason for a refusal.
    payload = {
        "state_dict": {"model.w": torch.zeros(1)},
        "epoch": 0,
        "global_step": 0,
        "hyper_parameters": {"x": _Payload(f"touch {marker}")},
        "pytorch-lightning_version": "2.6.0",
    }
    torch.save(payload, path)
    return path


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("mobilevision")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mobilevision.cli"]


def _tiny(root: Path) -> list[str]:
    return [
        f"--data.init_args.root={root / 'shapes'}",
        "--data.init_args.num_train=8",
        "--data.init_args.num_val=4",
        "--data.init_args.image_size=[64,64]",
        "--data.init_args.input_size=64",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--model.init_args.width_mult=0.35",
        "--trainer.max_time=null",
        "--trainer.max_steps=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
    ]


@pytest.mark.parametrize(
    ("command", "where"),
    [("fit", "file"), ("validate", "file"), ("fit", "last")],
    ids=["fit", "validate", "fit-resume-last"],
)
def test_pickled_code_in_ckpt_path_never_runs(tmp_path: Path, command: str, where: str) -> None:
    marker = tmp_path / "MARKER"
    if where == "last":
        # `--ckpt_path last` finds the run's own last.ckpt: someone replaced it with a hostile file.
        (tmp_path / "checkpoints").mkdir()
        evil = _evil_checkpoint(tmp_path / "checkpoints" / "last.ckpt", marker)
        ckpt_arg = "last"
    else:
        evil = ckpt_arg = _evil_checkpoint(tmp_path / "EVIL.ckpt", marker)
    args = [*_cli(), command, "-c", str(DET_SHAPES), *_tiny(tmp_path), f"--ckpt_path={ckpt_arg}"]
    out = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )
    assert not marker.exists(), "the checkpoint's payload ran"
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, out.stderr[-3000:]
    assert errors[0].startswith(f"mobilevision {command}: error: refusing checkpoint ")
    assert str(evil) in errors[0] and "pickled code is never run" in errors[0]
