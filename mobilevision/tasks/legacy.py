"""Configurations written before the criterion was injected (issue 23) still run.

The detection tasks took the loss options as their own arguments (`model.init_args.focal_gamma`); they are now the
criterion's (`model.init_args.criterion.init_args.focal_gamma`). `upgrade_argv` rewrites a LightningCLI command line
(its `--model.init_args.X` options and the configs it names with `-c` / `--config`, e.g. a run's saved
`config.yaml`) to the new layout, with a warning naming what moved; anything else passes unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

# The loss options the detection tasks' signatures held before.
LOSS_OPTIONS = (
    "neg_pos_ratio",
    "iou_threshold",
    "assignment",
    "atss_topk",
    "focal_gamma",
    "focal_alpha",
    "box_loss",
    "box_weight",
)
CRITERION = "mobilevision.tasks.detection.loss.MultiBoxLoss"
_OLD_PREFIX = "--model.init_args."
_NEW_PREFIX = "--model.init_args.criterion.init_args."


def upgrade_model_args(init_args: dict[str, Any]) -> list[str]:
    """Move the old loss options of a model's `init_args` under `criterion` (in place); the names moved."""
    moved = [name for name in LOSS_OPTIONS if name in init_args]
    if not moved:
        return []
    criterion = init_args.get("criterion") or {"class_path": CRITERION}
    criterion.setdefault("init_args", {})
    for name in moved:
        criterion["init_args"][name] = init_args.pop(name)
    init_args["criterion"] = criterion
    return moved


def _upgrade_config(text: str) -> tuple[str | None, list[str], bool]:
    """A YAML configuration's text in the new layout (None when nothing moved), the names moved, and whether it
    sets a criterion (after the move)."""
    config = yaml.safe_load(text)
    model = config.get("model") if isinstance(config, dict) else None
    init_args = model.get("init_args") if isinstance(model, dict) else None
    if not isinstance(init_args, dict):
        return None, [], False
    moved = upgrade_model_args(init_args)
    return (yaml.safe_dump(config, sort_keys=False) if moved else None), moved, "criterion" in init_args


def upgrade_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with old loss options moved under the criterion (see the module docstring)."""
    args = list(argv)
    moved: list[str] = []
    criterion_given = any(a.startswith("--model.init_args.criterion") for a in args)
    for i, arg in enumerate(args[:-1]):
        if arg in ("-c", "--config") and Path(args[i + 1]).is_file():
            text, names, has_criterion = _upgrade_config(Path(args[i + 1]).read_text())
            criterion_given |= has_criterion
            if text is not None:  # LightningCLI takes a configuration's text where it takes its path
                args[i + 1] = text
                moved += names
    out: list[str] = []
    for arg in args:
        name = arg[len(_OLD_PREFIX) :].split("=", 1)[0] if arg.startswith(_OLD_PREFIX) else ""
        if name not in LOSS_OPTIONS:
            out.append(arg)
            continue
        if not criterion_given:
            out.append(f"--model.init_args.criterion={CRITERION}")
            criterion_given = True
        out.append(_NEW_PREFIX + arg[len(_OLD_PREFIX) :])
        moved.append(name)
    if moved:
        warnings.warn(
            f"loss options are the criterion's now: {', '.join(sorted(set(moved)))} read as "
            "model.init_args.criterion.init_args.<name> (write them there; see the shipped configs)",
            FutureWarning,
            stacklevel=2,
        )
    return out
