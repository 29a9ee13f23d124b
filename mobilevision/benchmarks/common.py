"""The scaffolding every benchmark shares: its parser, the options most of them take, the checks on them, and the
end of `main` (the numbers written as JSON, the exit code)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobilevision.errors import UserError
from mobilevision.io import atomic_write_json


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """`mobilevision benchmark NAME`'s parser, described by the first paragraph of the module's docstring."""
    return argparse.ArgumentParser(prog=f"mobilevision benchmark {name}", description=(doc or "").split("\n\n")[0])


def add_timing(parser: argparse.ArgumentParser, *, repeats: int = 20) -> None:
    """--repeats (interleaved runs, medians reported) and --threads (intra-op thread counts)."""
    parser.add_argument("--repeats", type=int, default=repeats, help="interleaved runs per pipeline (medians reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="intra-op thread counts")


def add_json(parser: argparse.ArgumentParser, flag: str = "--json") -> None:
    parser.add_argument(flag, type=Path, default=None, help="also write the numbers to this JSON file")


def check_weights(weights: Path | None) -> None:
    """A user error, before any work, for a checkpoint that is not there."""
    if weights is not None and not weights.is_file():
        raise UserError(f"--weights {weights}: file not found")


def finish(results: Mapping[str, Any], json_path: Path | None, *, ok: bool = True) -> int:
    """Write `results` to `json_path` (atomically) if given; the exit code: 0 if `ok`, else 1."""
    if json_path is not None:
        atomic_write_json(json_path, results)
    return 0 if ok else 1
