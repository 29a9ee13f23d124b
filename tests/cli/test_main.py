from __future__ import annotations

import subprocess
import sys

from mobilevision.cli import COMMANDS, main


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_module_imports() -> None:
    import importlib

    for module, function, _ in COMMANDS.values():
        assert callable(getattr(importlib.import_module(module), function))


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "mobilevision.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "profile" in out.stdout
