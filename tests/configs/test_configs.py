"""Shipped configs: found by name from any folder, listed, copied out; a typo names the closest configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilevision.cli.configs import main
from mobilevision.configs import (
    CONFIG_DIR,
    ConfigNotFoundError,
    config_names,
    config_paths,
    copy_config,
    resolve_config,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_shipped_config_is_listed_once_and_names_are_unique() -> None:
    paths = config_paths()
    from mobilevision.tasks.table import TASKS

    # One folder per task of the task table that trains.
    assert {p.parent.name for p in paths} == {name for name, task in TASKS.items() if task.trains}
    assert len(config_names()) == len(paths)  # stems are unique, so a name is enough
    assert "ssdlite_mobilenetv2_shapes" in config_names()


def test_repository_configs_folder_is_the_package_folder() -> None:
    # The checkout's `configs/` is where people edit; it must be the shipped files, not a copy that drifts.
    assert (REPO / "configs").resolve() == CONFIG_DIR


@pytest.mark.parametrize(
    "name",
    [
        "ssdlite_mobilenetv2_shapes",
        "ssdlite_mobilenetv2_shapes.yaml",
        "detection/ssdlite_mobilenetv2_shapes",
        "configs/detection/ssdlite_mobilenetv2_shapes.yaml",
    ],
)
def test_names_resolve_from_any_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config(name) == CONFIG_DIR / "detection" / "ssdlite_mobilenetv2_shapes.yaml"


def test_an_existing_path_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "ssdlite_mobilenetv2_shapes.yaml"
    own.write_text("seed_everything: 1\n")
    assert resolve_config("ssdlite_mobilenetv2_shapes.yaml") == Path("ssdlite_mobilenetv2_shapes.yaml")


@pytest.mark.parametrize(
    "name",
    [
        "ssdlite_mobilenetv2_shapse",
        "segmentation/ssdlite_mobilenetv2_shapes",
        "elsewhere/detection/ssdlite_mobilenetv2_shapes.yaml",
    ],
)
def test_unknown_names_suggest_the_closest(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigNotFoundError, match="ssdlite_mobilenetv2_shapes"):
        resolve_config(name)


def test_copy_writes_an_editable_copy_and_never_overwrites(tmp_path: Path) -> None:
    target = copy_config("deeplabv3_mobilenetv2_shapes", tmp_path)
    assert target == tmp_path / "deeplabv3_mobilenetv2_shapes.yaml"
    assert target.read_bytes() == config_names()["deeplabv3_mobilenetv2_shapes"].read_bytes()
    assert target.stat().st_mode & 0o044  # readable by group and others under the usual umask
    with pytest.raises(Exception, match="already exists"):
        copy_config("deeplabv3_mobilenetv2_shapes", target)
    assert copy_config("deeplabv3_mobilenetv2_shapes", target, overwrite=True) == target


def test_command_lists_and_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(p.stem in out for p in config_paths())
    assert main(["copy", "ssdlite_mobilenetv2_voc", str(tmp_path / "mine.yaml")]) == 0
    assert (tmp_path / "mine.yaml").is_file()


def test_an_unreadable_config_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Permissions cannot be taken from root (these tests may run as root): os.access stands in for chmod 000.
    own = tmp_path / "mine.yaml"
    own.write_text("seed_everything: 1\n")
    monkeypatch.setattr("mobilevision.configs.os.access", lambda path, mode: False)
    with pytest.raises(ConfigNotFoundError, match="mine.yaml: file is not readable"):
        resolve_config(own)
