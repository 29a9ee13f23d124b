"""`mobilevision data shapes|check`: generate the synthetic shapes set, check a dataset through its training reader."""

from __future__ import annotations

from collections.abc import Sequence

from mobilevision.subcommands import dispatch

TABLE = {
    "shapes": ("mobilevision.data.shapes", "main"),
    "check": ("mobilevision.data.check", "main"),
}


def main(argv: Sequence[str]) -> int:
    return dispatch("data", TABLE, argv)
