"""Atomic writes: the file appears whole, with the mode a plain open() would give (the umask honoured)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mobilevision.io import _umask, atomic_write_text


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        assert _umask() == umask
        atomic_write_text(tmp_path / "out.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    from mobilevision.io import atomic_path

    target = tmp_path / "out.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_unwritable_output_folders_are_one_line_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilevision.errors import UserError
    from mobilevision.io import check_writable_folder

    check_writable_folder(tmp_path / "new" / "deeper", "--output")  # creatable: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "run", "--output")
    # Read-only folders cannot be made for root (tests may run as root): os.access stands in for chmod 555.
    monkeypatch.setattr("mobilevision.io.os.access", lambda path, mode: False)
    with pytest.raises(UserError, match=r"--output .*: .* is not writable; choose a folder you can write in"):
        check_writable_folder(tmp_path / "ro" / "run", "--output")
