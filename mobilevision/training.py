"""LightningCLI with the project's defaults, behind `mobilevision fit | validate | test | predict -c CONFIG`
(`mobilevision.cli.fit`).

What the CLI adds to a plain LightningCLI:
- checkpoints under `<default_root_dir>/checkpoints`: `last.ckpt` every `checkpoint.every_n_train_steps` steps and at
  every epoch end, written atomically (temporary file, fsync, rename), so `--ckpt_path last` always finds a whole file;
- checkpoints are read with `weights_only=True`: a file holding pickled code is refused and its code never runs;
- `num_classes` and `input_size` linked from the DataModule to the model, once;
- the resolved config saved with every run (`config.yaml` beside the logs);
- `-c NAME` finds a config shipped with the package (`mobilevision.configs.resolve_config`), a path still works;
- user errors (bad paths, bad data, unsafe checkpoints, unwritable output folders), including those raised while
  jsonargparse instantiates the classes, end with one message and exit code 2, no traceback. The DataModule is
  instantiated before the model (the linked arguments need it first), so a wrong data root is reported before any
  weights download or model build.
"""

from __future__ import annotations

import logging
import os
import pickle
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mobilevision.errors import UserError, WeightsError
from mobilevision.io import atomic_path, check_writable_folder

# What torch.load raises for a file it refuses or cannot read (pickled code, garbage, an empty or cut file).
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError, ValueError)


def _refusal(path: Any, error: BaseException) -> WeightsError:
    """One line naming the file; for pickled code, the global torch refused (its message is otherwise an essay)."""
    from mobilevision.checkpoint import refusal_cause

    cause = refusal_cause(error)
    return WeightsError(
        f"refusing checkpoint {path}: it is not a checkpoint of tensors and plain data ({cause}); "
        "checkpoints are loaded with weights_only=True and pickled code is never run"
    )


def user_error_in(error: BaseException) -> UserError | None:
    """The `UserError` behind `error`, if any: jsonargparse wraps what a class's `__init__` raises in a ValueError
    (listing every Union alternative it tried), but chains the original as `__cause__`, so it is recovered intact."""
    for current in _chain(error):
        if isinstance(current, UserError):
            return current
        if isinstance(current, OSError) and current.filename is not None:
            # A file the configuration names (a root, an annotation file) that is missing or unreadable.
            return UserError(f"{current.filename}: {current.strerror or current}")
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception behind it (`__context__`, `__cause__`), each once."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__context__, current.__cause__) if e is not None]


_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def config_value_error_in(error: BaseException) -> UserError | None:
    """A `ValueError` that mobilevision code raised for a configured value (a builder quoting the offending value,
    e.g. "unknown taps ['nope']"), found in `error`'s chain, as a one-line `UserError`; None if there is none.

    Used only while LightningCLI instantiates the configured classes, where such a ValueError is a configuration
    mistake: the constructors' arguments are the config's values.
    """
    for current in _chain(error):
        if isinstance(current, ValueError) and current.__traceback__ is not None:
            frames = traceback.extract_tb(current.__traceback__)
            if frames and frames[-1].filename.startswith(_PACKAGE_DIR):
                message = " ".join(str(current).split())
                return UserError(f"invalid configuration: {message}")
    return None


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """`argv` with every `-c/--config VALUE` replaced by the file it denotes (`mobilevision.configs.resolve_config`).

    Done before jsonargparse sees the arguments, so a shipped config is found by name from any folder and a typo is
    one line naming the closest configs instead of the parser's usage text.
    """
    from mobilevision.configs import resolve_config

    args = list(argv)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--config") and i + 1 < len(args):
            out += [arg, str(_checked_yaml(resolve_config(args[i + 1])))]
            i += 2
            continue
        for prefix in ("--config=", "-c="):
            if arg.startswith(prefix):
                arg = prefix + str(_checked_yaml(resolve_config(arg[len(prefix) :])))
        out.append(arg)
        i += 1
    return out


def _checked_yaml(path: Path) -> Path:
    """`path`, after checking it parses as a YAML mapping (jsonargparse would bury the YAML error under its usage)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"config {path}: cannot read it ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"config {path}: not valid YAML ({where}{problem})") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path}: expected a YAML mapping (trainer:, model:, data:), got {type(data).__name__}")
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoints written to a temporary file in the same folder, fsynced, then renamed over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except _LOAD_ERRORS as error:
            raise _refusal(path, error) from None


class ResumableCheckpoint(ModelCheckpoint):
    """`last.ckpt` every N training steps *and* at every epoch end (stock ModelCheckpoint does one or the other)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class MobileVisionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 0,
                "checkpoint.every_n_train_steps": 500,
                "checkpoint.filename": "step{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.link_arguments("data.input_size", "model.init_args.input_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads `--ckpt_path`'s hyper-parameters before anything else (with weights_only=True, so no
        # code runs) and lets the unpickler's refusal escape as a traceback: make it our one-line message.
        try:
            super()._parse_ckpt_path()
        except _LOAD_ERRORS as error:
            raise _refusal(self.config[self.config.subcommand].get("ckpt_path"), error) from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.get("default_root_dir") or os.getcwd()
        check_writable_folder(root, "--trainer.default_root_dir")
        # A mistyped --ckpt_path is reported before the trainer (and its banner of devices) is built.
        ckpt_path = config.get("ckpt_path")
        if ckpt_path not in (None, "last", "best", "hpc", "registry") and not Path(str(ckpt_path)).is_file():
            raise UserError(f"--ckpt_path {ckpt_path}: no such file")
        if not config.checkpoint.get("dirpath"):
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        check_writable_folder(config.checkpoint.dirpath, "--checkpoint.dirpath")
        logger = config.trainer.get("logger")
        save_dir = logger.get("init_args", {}).get("save_dir") if hasattr(logger, "get") else None
        if save_dir:
            check_writable_folder(save_dir, "--trainer.logger.init_args.save_dir")
        plugins = config.trainer.get("plugins")
        if not plugins:
            config.trainer.plugins = [{"class_path": f"{__name__}.AtomicCheckpointIO"}]

    def instantiate_classes(self) -> None:
        # A UserError raised in a class's __init__ (a DataModule checking its root) reaches us wrapped by
        # jsonargparse in a many-line ValueError; unwrap it so the user sees the one line that matters.
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - re-raised unchanged unless it hides a user error
            found = user_error_in(error) or config_value_error_in(error)
            if found is None:
                raise
            raise found from None

    def _write_metrics(self, name: str) -> None:
        # Machines read this instead of the printed table: `<default_root_dir>/{validate,test}_metrics.json`.
        if self.trainer.is_global_zero:
            from mobilevision.io import atomic_write_json

            metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
            atomic_write_json(Path(self.trainer.default_root_dir) / f"{name}_metrics.json", metrics)

    def after_validate(self) -> None:
        self._write_metrics("validate")

    def after_test(self) -> None:
        self._write_metrics("test")

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            kwargs["weights_only"] = True
        ckpt_path = kwargs.get("ckpt_path")
        if ckpt_path not in (None, "last", "best", "hpc", "registry") and not Path(str(ckpt_path)).is_file():
            raise UserError(f"--ckpt_path {ckpt_path}: no such file")
        return kwargs


def run_cli(argv: Sequence[str], *, run: bool = True) -> MobileVisionCLI:
    """Build (and by default run) the CLI on `argv`; models and DataModules are any subclasses named in the config."""
    import warnings

    from mobilevision.plots import PlotCallback
    from mobilevision.tasks.base import BaseTask
    from mobilevision.tasks.legacy import upgrade_argv

    # LightningCLI warns when sys.argv also holds arguments; here argv *is* the command line, minus our prefix.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    # "Seed set to N" on stderr would come before (and double) a one-line error; the seed is in the saved config.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    return MobileVisionCLI(
        BaseTask,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        # Every run draws its pictures (curves, PR curves, confusion matrix) at the end: `<root>/plots/`.
        trainer_defaults={"callbacks": [PlotCallback()]},
        args=upgrade_argv(argv),  # configurations of before the criterion was injected still run
        run=run,
        auto_configure_optimizers=False,
    )


class CurveLogger(pl.Callback):
    """Writes `curve.csv` in the run folder: training minutes and every `val/*` metric at each validation.

    Minutes are the Timer's training time when the run has `max_time` (it survives resumes), else wall time.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = path
        self._start: float | None = None
        self.rows: list[dict[str, float]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import time

        self._start = time.monotonic()

    def _minutes(self, trainer: pl.Trainer) -> float:
        import time

        from lightning.pytorch.callbacks import Timer

        for callback in trainer.callbacks:
            if isinstance(callback, Timer):
                return callback.time_elapsed("train") / 60
        return (time.monotonic() - (self._start or time.monotonic())) / 60

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        row = {"minutes": round(self._minutes(trainer), 3), "step": trainer.global_step, "epoch": trainer.current_epoch}
        self.rows.append({**row, **metrics})
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "curve.csv"
        keys = list(self.rows[0])
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in self.rows]
        from mobilevision.io import atomic_write_text

        atomic_write_text(path, "\n".join(lines) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
