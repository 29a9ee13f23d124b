"""`mobilevision fit | validate | test -c CONFIG` (and `predict -c CONFIG`): LightningCLI with the project's
defaults (`mobilevision.training.MobileVisionCLI`), a user error ending in one message and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run(subcommand: str, argv: Sequence[str]) -> int:
    """LightningCLI's `subcommand` on `argv` (a shipped config found by name)."""
    from mobilevision.errors import UserError
    from mobilevision.tasks.base import NonFiniteLossError
    from mobilevision.training import resolve_config_args, run_cli, user_error_in

    args = resolve_config_args(argv)
    try:
        run_cli([subcommand, *args])
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else _fail(exit_.code)
    except NonFiniteLossError as error:
        # The last checkpoint stays; the message names the batch's files and says what to change.
        raise UserError(str(error)) from None
    except UserError:
        raise
    except OSError as error:
        # A file or folder of the user's (missing, unreadable, not writable) met during the run.
        found = user_error_in(error)
        if found is None:
            raise
        raise found from None
    return 0


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def fit(argv: Sequence[str]) -> int:
    return run("fit", argv)


def validate(argv: Sequence[str]) -> int:
    return run("validate", argv)


def test(argv: Sequence[str]) -> int:
    return run("test", argv)


def predict(argv: Sequence[str]) -> int:
    return run("predict", argv)
