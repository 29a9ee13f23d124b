"""The one JSON reader every dataset reader and evaluator uses: user files are untrusted, so every way a file can be
unreadable or malformed (not UTF-8, cut short, nested deeper than Python's parser recurses) becomes a `DatasetError`
naming the file and where it breaks, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobilevision.errors import DatasetError


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file.

    Raises:
        DatasetError: missing or unreadable file, or malformed JSON (with line and column).
    """
    path = Path(path)
    label = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{label}: file not found") from None
    except OSError as error:
        raise DatasetError(f"{label}: cannot read ({error.strerror or error})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise DatasetError(f"{label}: malformed JSON ({error.msg} at {where})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{label}: malformed JSON (not UTF-8 text)") from None
    except RecursionError:  # "[[[[...": Python's parser recurses once per level
        raise DatasetError(f"{label}: malformed JSON (nested too deeply)") from None


def is_int(value: Any) -> bool:
    """A JSON integer: an `int` that is not a `bool` (JSON's true is Python's True, an int subclass)."""
    return isinstance(value, int) and not isinstance(value, bool)
