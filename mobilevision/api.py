"""`mobilevision.train(...)`: training from Python, for people who would rather not write YAML.

It is the command line in another form, not a second code path: the arguments become the LightningCLI arguments of
`mobilevision fit -c CONFIG ...` (the shipped config by name, or a file) and run through the same
`mobilevision.training.run_cli`, so checkpoints, the saved config, the curves and the pictures are the same.

    import mobilevision
    result = mobilevision.train("ssdlite_mobilenetv2_shapes", data_root="data_cache/shapes", max_epochs=2,
                                output_dir="runs/mine", model__width_mult=0.35, data__batch_size=8)
    result.checkpoint, result.metrics["val/map"], result.plots

Keyword overrides name a config key with `__` for each dot: `trainer__precision="bf16-mixed"` is
`--trainer.precision=bf16-mixed`; for `model` and `data` the `init_args` level is added when omitted
(`model__width_mult` is `--model.init_args.width_mult`). Values are written as JSON (lists, booleans, None).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilevision.errors import UserError


@dataclass
class TrainResult:
    """What a `train` call produced."""

    checkpoint: Path | None  # `last.ckpt` (None if training ended before any checkpoint was written)
    metrics: dict[str, float]  # the trainer's last logged metrics (`val/*` from the last validation, `train/*`)
    run_dir: Path  # the run's `default_root_dir`: config.yaml, curve.csv, logs/, plots/, checkpoints/
    plots: list[Path] = field(default_factory=list)  # the PNGs written at the end of training


def override_args(overrides: dict[str, Any]) -> list[str]:
    """`{"model__width_mult": 0.5}` -> `["--model.init_args.width_mult=0.5"]` (see the module docstring)."""
    args = []
    for name, value in overrides.items():
        parts = name.split("__")
        if parts[0] in ("model", "data") and len(parts) > 1 and parts[1] not in ("init_args", "class_path"):
            parts.insert(1, "init_args")
        text = value if isinstance(value, str) else json.dumps(os.fspath(value) if isinstance(value, Path) else value)
        args.append(f"--{'.'.join(parts)}={text}")
    return args


def train(
    config: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    max_time: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    args: Sequence[str] = (),
    **overrides: Any,
) -> TrainResult:
    """Train with a shipped config (by name, e.g. "ssdlite_mobilenetv2_shapes") or a config file.

    Args:
        config: a shipped config's name or a YAML path (`mobilevision.configs.resolve_config`).
        data_root: the dataset folder (`data.init_args.root`).
        max_epochs, max_steps: training length; either one also lifts the config's `max_time` budget unless
            `max_time` ("DD:HH:MM:SS") is given too.
        output_dir: the run folder (`trainer.default_root_dir`, and the CSV logger's `save_dir` when the config
            logs with one); default: the config's.
        resume: continue from `<output_dir>/checkpoints/last.ckpt` when it exists.
        args: further LightningCLI arguments as on the command line, e.g. `["--trainer.precision=bf16-mixed"]`.
        **overrides: config keys with `__` for dots (see the module docstring).

    Raises:
        UserError: a config, data root or output folder that cannot be used, or arguments LightningCLI refuses
            (its message is printed above).
    """
    from mobilevision.configs import resolve_config
    from mobilevision.training import resolve_config_args, run_cli

    path = resolve_config(config)
    argv = ["-c", str(path)]
    if data_root is not None:
        argv.append(f"--data.init_args.root={os.fspath(data_root)}")
    if max_epochs is not None:
        argv.append(f"--trainer.max_epochs={int(max_epochs)}")
    if max_steps is not None:
        argv.append(f"--trainer.max_steps={int(max_steps)}")
    if max_time is not None or max_epochs is not None or max_steps is not None:
        argv.append(f"--trainer.max_time={max_time if max_time is not None else 'null'}")
    if output_dir is not None:
        argv.append(f"--trainer.default_root_dir={os.fspath(output_dir)}")
        if _logs_with_save_dir(path):
            argv.append(f"--trainer.logger.init_args.save_dir={os.fspath(output_dir)}")
        if resume and (Path(output_dir) / "checkpoints" / "last.ckpt").is_file():
            argv.append("--ckpt_path=last")
    argv += [*args, *override_args(overrides)]
    try:
        cli = run_cli(["fit", *resolve_config_args(argv)])
    except SystemExit as exit_:
        # jsonargparse has printed what it refused; a Python caller gets an exception, not an exit.
        raise UserError(f"LightningCLI refused the arguments {argv[2:]} (exit code {exit_.code})") from None
    trainer = cli.trainer
    run_dir = Path(trainer.default_root_dir)
    callback = trainer.checkpoint_callback
    last = Path(callback.dirpath) / "last.ckpt" if callback is not None and callback.dirpath else None
    from mobilevision.plots import PlotCallback

    plots = [p for c in trainer.callbacks if isinstance(c, PlotCallback) for p in c.written]
    return TrainResult(
        checkpoint=last if last is not None and last.is_file() else None,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        run_dir=run_dir,
        plots=plots,
    )


def _logs_with_save_dir(config: Path) -> bool:
    """Whether the config's trainer logger takes a `save_dir` (CSVLogger, TensorBoardLogger), so it follows
    `output_dir` instead of writing its logs where the config says."""
    import yaml

    logger = ((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("trainer") or {}).get("logger")
    return isinstance(logger, dict) and "save_dir" in (logger.get("init_args") or {})
