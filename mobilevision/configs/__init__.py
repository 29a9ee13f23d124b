"""The LightningCLI configs shipped with the package, and how a name or a path becomes one of them.

The YAML files live here, inside the package, so a pip install has them (the repository's `configs/` is a symlink
to this folder, so they are still edited where they always were). The public API is three functions:

- `config_paths()`: every shipped config, sorted (tests enumerate configs with it);
- `resolve_config(name_or_path)`: an existing file is returned as it is; otherwise a shipped config by name
  (`ssdlite_mobilenetv2_shapes`), by task and name (`detection/ssdlite_mobilenetv2_shapes`), with or without
  `.yaml`, or by its old repository path (`configs/detection/ssdlite_mobilenetv2_shapes.yaml`, so the README's
  commands work from any folder); anything else is a `ConfigNotFoundError` naming the closest shipped names;
- `copy_config(name, dest)`: copies a shipped config out for editing.

`mobilevision configs [list | copy NAME [DEST]]` is the command-line face of the same functions.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from mobilevision.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent


class ConfigNotFoundError(UserError):
    """A `-c` argument that is neither an existing file nor the name of a shipped config."""


def config_paths() -> list[Path]:
    """Every shipped config (`<task>/<name>.yaml` under this package), sorted by task then name."""
    return sorted(CONFIG_DIR.glob("*/*.yaml"))


def config_names() -> dict[str, Path]:
    """Shipped configs by their short name (the file stem, unique across tasks) -> path."""
    return {path.stem: path for path in config_paths()}


def _shipped(name: str) -> Path | None:
    """The shipped config `name` denotes (stem, task/stem, with or without .yaml, or `configs/<task>/<stem>.yaml`)."""
    key = name.replace("\\", "/").removesuffix(".yaml").removesuffix(".yml")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not parts:
        return None
    by_stem = config_names()
    path = by_stem.get(parts[-1])
    if path is None:
        return None
    # A task given (`segmentation/ssdlite_...`) must be the config's own task; a path prefix before it is ignored
    # only when it ends in `configs` (the repository's layout), so `elsewhere/foo.yaml` is not silently replaced.
    if len(parts) >= 2 and parts[-2] != path.parent.name:
        return None
    if len(parts) >= 3 and parts[-3] != "configs":
        return None
    return path


def resolve_config(name_or_path: str | os.PathLike[str]) -> Path:
    """The config file `name_or_path` denotes: an existing file as it is, else a shipped config (see module doc).

    Raises `ConfigNotFoundError` (one line, with the closest shipped names) for anything else, and for a path that
    exists but is a folder or cannot be read.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise ConfigNotFoundError(f"config {text}: file is not readable; check its permissions")
        return path
    shipped = _shipped(text)
    if shipped is not None:
        return shipped
    if path.is_dir():
        raise ConfigNotFoundError(f"config {text}: is a folder, not a YAML file")
    names = list(config_names())
    close = difflib.get_close_matches(path.stem, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigNotFoundError(
        f"config {text}: no such file and no shipped config of that name; {hint}"
        f"`mobilevision configs` lists the {len(names)} shipped configs"
    )


def copy_config(name: str, dest: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
    """Copy the shipped config `name` to `dest` (a file, or a folder to put `<name>.yaml` in; default: cwd).

    Refuses to replace an existing file unless `overwrite`, so an edited copy is never lost.
    """
    source = _shipped(name)
    if source is None:
        resolve_config(name)  # raises with suggestions when it is not a shipped config
        raise ConfigNotFoundError(f"config {name}: not a shipped config; `mobilevision configs` lists them")
    target = Path(dest) if dest is not None else Path.cwd()
    if target.is_dir():
        target = target / source.name
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; choose another destination or pass --force to replace it")
    from mobilevision.io import atomic_write_bytes

    try:
        atomic_write_bytes(target, source.read_bytes())
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror or error}; choose a writable destination") from None
    return target


def first_comment(path: Path) -> str:
    """The config's first comment line: what it trains (each shipped config starts with one)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""
