"""Second-level dispatch for commands with sub-commands (`data`, `evaluate`, `benchmark`): explicit tables, lazy
imports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def dispatch(command: str, table: dict[str, tuple[str, str]], argv: Sequence[str]) -> int:
    """Run `table[argv[0]]` (a `(module, function)` pair) with the rest of argv."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: mobilevision {command} {{{','.join(table)}}} [options]")
        for name, (module, function) in table.items():
            print(f"  {name:<14} ({module}.{function})")
        return 0 if args else 2
    if args[0] not in table:
        print(f"mobilevision {command}: unknown sub-command {args[0]!r}; valid: {', '.join(table)}", file=sys.stderr)
        return 2
    module, function = table[args[0]]
    return int(getattr(importlib.import_module(module), function)(args[1:]) or 0)
