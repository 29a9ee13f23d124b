"""The `mobilevision` command: one explicit table from command to the module of this package that parses its
arguments and prints its results (the work is in the library modules they call).

Modules are imported only when their command runs, so `mobilevision --help` is instant and a command's heavy
imports (Lightning, onnxruntime) cost nothing to the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mobilevision.errors import UserError

# name -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "configs": ("mobilevision.cli.configs", "main", "list the shipped configs, or copy one out for editing"),
    "demo": (
        "mobilevision.cli.demo",
        "main",
        "train, evaluate and run the models on generated data (what `make demo` runs)",
    ),
    "profile": ("mobilevision.cli.profile", "main", "parameters and MAdds of the paper's configurations"),
    "data": ("mobilevision.cli.data", "main", "generate the synthetic shapes set, check a dataset"),
    "evaluate": ("mobilevision.cli.evaluate", "main", "score a predictions file against ground truth"),
    "fit": ("mobilevision.cli.fit", "fit", "train with a LightningCLI config"),
    "validate": ("mobilevision.cli.fit", "validate", "validate with a LightningCLI config"),
    "test": ("mobilevision.cli.fit", "test", "test with a LightningCLI config"),
    "predict": ("mobilevision.cli.predict", "main", "run a model on images, folders, videos or streams"),
    "export": ("mobilevision.cli.export", "main", "export a model to ONNX and check parity"),
    "convert": ("mobilevision.cli.convert", "main", "convert a TF reference checkpoint (the paper's model zoos)"),
    "benchmark": ("mobilevision.cli.benchmark", "main", "measure data-loading and end-to-end inference speed"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: mobilevision <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `mobilevision <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "--version":
        from mobilevision import __version__

        print(__version__)
        return 0
    if name not in COMMANDS:
        print(f"mobilevision: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[name]
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return int(function(rest) or 0)
    except UserError as error:
        # One line, whatever the message: a user reads the first line, and scripts grep it.
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"mobilevision {name}: error: {message}", file=sys.stderr)
        return 2
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError) as error:
        # A file or folder of the user's met mid-run (the checks up front catch most): the path and the reason.
        if error.filename is None:
            raise
        print(f"mobilevision {name}: error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mobilevision {name}: interrupted", file=sys.stderr)
        return 130
