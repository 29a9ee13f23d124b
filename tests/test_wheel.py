"""What a pip user gets: the wheel, installed outside the repository, runs `configs`, `fit` and `demo` from any folder.

The wheel is built from a copy of the sources (so no `build/` is left in the checkout), installed without
dependencies into a `--target` folder (this venv already has them), and run with only that folder on PYTHONPATH and a
working directory outside the repository: the shipped configs must come from the wheel, not from a checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    shutil.copytree(
        REPO / "mobilevision", source / "mobilevision", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(work / "dist")],
        check=True,
        capture_output=True,
        cwd=work,
    )
    (wheel,) = (work / "dist").glob("mobilevision-*.whl")
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    return target


def _run(target: Path, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [str(target / "bin" / "mobilevision"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


@pytest.mark.slow
def test_installed_wheel_lists_fits_and_demos_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    out = _run(installed, tmp_path, "configs")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ssdlite_mobilenetv2_shapes" in out.stdout and str(installed) in out.stdout  # the wheel's own copies

    out = _run(installed, tmp_path, "fit", "-c", "ssdlite_mobilenetv2_shapes", "--trainer.fast_dev_run=true")
    assert out.returncode == 0, out.stderr[-3000:]

    # A tiny demo (the shapes set is generated at its default size otherwise): what is checked here is that the
    # installed package finds its own configs and data, not what the demo learns (tests/test_demo.py).
    tiny = [
        f"--override=--{k}"
        for k in (
            "data.init_args.num_train=12",
            "data.init_args.num_val=4",
            "data.init_args.batch_size=4",
            "trainer.max_steps=3",
        )
    ]
    out = _run(installed, tmp_path, "demo", "--minutes", "0.1", "--threads", "1", *tiny)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "demo" / "summary.json").is_file()
    assert not (tmp_path / "configs").exists()  # nothing was looked up in (or copied to) the working folder
