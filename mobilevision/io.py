"""Atomic file writes: a temporary file in the same folder, flushed and fsynced, then renamed over the target.

An interrupted run never leaves a half-written file where a good one was. The file gets the mode a plain `open()`
would have given it (`0o666` minus the umask, so 0644 under the usual 022): mkstemp's private 0600 would keep
checkpoints and outputs from a teammate or a serving process.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mobilevision.errors import UserError


def _umask() -> int:
    """The process umask: from /proc on Linux (read-only), else by setting it and setting it back, which for an
    instant changes it for every thread (the only portable way)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed onto `target`, on error removed.

    The temporary name keeps the target's suffix so writers that choose a format by extension (cv2.imwrite,
    torch.onnx.export) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        # Before the rename, so the target never appears with the private mode.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(target, json.dumps(obj, indent=indent) + "\n")


def check_writable_folder(path: str | os.PathLike[str], what: str) -> None:
    """Raise a one-line `UserError` unless `path` is (or can be created as) a folder this process can write in.

    Checked before the model is built, so a read-only or mistyped output folder costs nothing.
    """
    folder = Path(path)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{what} {folder}: {existing} is a file, not a folder; choose another {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {folder}: {existing} is not writable; choose a folder you can write in")
