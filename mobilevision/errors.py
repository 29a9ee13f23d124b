"""Errors a user can fix. The CLI prints their message and exits non-zero without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (a file, an argument, a dataset layout), not a bug in mobilevision."""


class DatasetError(UserError):
    """A structural defect in a dataset (malformed JSON, unknown id, wrong layout), found before any work starts."""


class WeightsError(UserError):
    """A weights or checkpoint file that cannot be used: wrong keys or shapes, not a checkpoint, or unsafe content."""


class InvalidValueError(UserError, ValueError):
    """An argument or input outside what the code supports (a `ValueError` too, for callers that catch one)."""
