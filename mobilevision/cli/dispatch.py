"""Second-level dispatch for the commands with sub-commands (`data`, `evaluate`, `benchmark`): explicit tables,
imported only when the sub-command runs."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence

# sub-command -> (module, function, what it does in one line). The function takes the remaining argv.
Table = Mapping[str, tuple[str, str, str]]


def usage(command: str, table: Table) -> str:
    """`mobilevision COMMAND --help`: the sub-commands, each with what it does."""
    width = max(len(name) for name in table)
    lines = [f"usage: mobilevision {command} {{{','.join(table)}}} [options]", "", "sub-commands:"]
    lines += [f"  {name:<{width}}  {description}" for name, (_, _, description) in table.items()]
    lines += ["", f"Run `mobilevision {command} <sub-command> --help` for its options."]
    return "\n".join(lines)


def dispatch(command: str, table: Table, argv: Sequence[str]) -> int:
    """Run `table[argv[0]]` with the rest of argv."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(command, table))
        return 0 if args else 2
    if args[0] not in table:
        print(f"mobilevision {command}: unknown sub-command {args[0]!r}; valid: {', '.join(table)}", file=sys.stderr)
        return 2
    module, function, _ = table[args[0]]
    return int(getattr(importlib.import_module(module), function)(args[1:]) or 0)
