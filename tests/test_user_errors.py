"""The mistakes table: every user error is one line on stderr, exit code 2, no traceback, no usage text.

Each row is a real mistake run as a fresh process (what a user sees): forked from one server that has imported the
heavy modules once (`tests/fixtures/forked_cli.py`, 25 cold starts would cost about 2.5 minutes), with one row also
run through the console script from a cold start, and the server's imports required to print nothing. The same
rows, with their messages, are the troubleshooting table of docs/troubleshooting.md (a few rows in the README):
`python -m tests.test_user_errors` prints it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.forked_cli import ForkedCli

REPO = Path(__file__).resolve().parents[1]


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("mobilevision")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mobilevision.cli"]


def _env() -> dict[str, str]:
    # The repository on the path (tests may run against a worktree); no PYTHONWARNINGS: warnings would count.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, "OMP_NUM_THREADS": "1"}


def _files(root: Path) -> dict[str, Path]:
    """The broken things the mistakes point at."""
    paths = {
        "file": root / "a_file.txt",
        "folder": root / "a_folder",
        "bad_yaml": root / "broken.yaml",
        "coco_bad_json": root / "coco_bad",
        "voc_no_masks": root / "VOCdevkit",
        "voc_det_no_lists": root / "VOCdet",
        "garbage_ckpt": root / "garbage.ckpt",
        "gt": root / "gt.json",
        "not_json": root / "predictions.json",
        "image": root / "image.png",
    }
    paths["file"].write_text("not a folder\n")
    paths["folder"].mkdir()
    paths["bad_yaml"].write_text("trainer: [unclosed\n")
    (paths["coco_bad_json"] / "annotations").mkdir(parents=True)
    (paths["coco_bad_json"] / "annotations" / "instances_val2017.json").write_text("{not json")
    (paths["voc_no_masks"] / "VOC2012" / "JPEGImages").mkdir(parents=True)
    (paths["voc_det_no_lists"] / "VOC2007" / "Annotations").mkdir(parents=True)
    paths["garbage_ckpt"].write_bytes(b"\x00garbage" * 10)
    paths["gt"].write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                "annotations": [],
                "categories": [{"id": 1, "name": "a"}],
            }
        )
    )
    paths["not_json"].write_text("{oops")
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(paths["image"])
    return paths


# (id, argv built from the files, a fragment the one line must contain). Order: what a new user meets first.
MISTAKES: list[tuple[str, Callable[[dict[str, Path]], list[str]], str]] = [
    (
        "config name typo",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_shapse"],
        "did you mean ssdlite_mobilenetv2_shapes",
    ),
    ("config path typo", lambda f: ["fit", "-c", "configs/detection/ssdlite_mobilenet_shapes.yaml"], "no such file"),
    ("config is a folder", lambda f: ["fit", "--config", str(f["folder"])], "is a folder"),
    ("config is not YAML", lambda f: ["fit", "-c", str(f["bad_yaml"])], "broken.yaml"),
    (
        "COCO root empty",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_coco", "--data.init_args.root="],
        "`root` is empty",
    ),
    (
        "COCO root missing",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_coco", f"--data.init_args.root={f['folder']}/coco"],
        "is not a folder",
    ),
    (
        "COCO annotations not JSON",
        lambda f: ["validate", "-c", "ssdlite_mobilenetv2_coco", f"--data.init_args.root={f['coco_bad_json']}"],
        "malformed JSON",
    ),
    (
        "VOC root without SegmentationClass",
        lambda f: ["fit", "-c", "deeplabv3_mobilenetv2_voc", f"--data.init_args.root={f['voc_no_masks']}"],
        "SegmentationClass",
    ),
    (
        "VOC detection root without split lists",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_voc", f"--data.init_args.root={f['voc_det_no_lists']}"],
        "split file not found",
    ),
    (
        "output root is a file",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_shapes", f"--trainer.default_root_dir={f['file']}"],
        "is a file, not a folder",
    ),
    (
        "output root under a file",
        lambda f: ["fit", "-c", "ssdlite_mobilenetv2_shapes", f"--trainer.default_root_dir={f['file']}/run"],
        "is a file, not a folder",
    ),
    (
        "width_mult outside the paper's range",
        lambda f: [
            "fit",
            "-c",
            "ssdlite_mobilenetv2_shapes",
            "--model.init_args.width_mult=2.0",
            f"--data.init_args.root={f['folder']}/shapes",
        ],
        "width_mult must be between 0.35 and 1.4",
    ),
    (
        "config value a builder refuses",
        lambda f: [
            "fit",
            "-c",
            "ssdlite_mobilenetv2_shapes",
            "--model.init_args.taps=[layer_99]",
            f"--data.init_args.root={f['folder']}/shapes",
        ],
        "invalid configuration: unknown taps ['layer_99']",
    ),
    (
        "checkpoint missing",
        lambda f: [
            "validate",
            "-c",
            "ssdlite_mobilenetv2_shapes",
            f"--ckpt_path={f['folder']}/x.ckpt",
            f"--data.init_args.root={f['folder']}/shapes",
            f"--trainer.default_root_dir={f['folder']}/run",
        ],
        "no such file",
    ),
    (
        "checkpoint not a checkpoint",
        lambda f: ["validate", "-c", "ssdlite_mobilenetv2_shapes", f"--ckpt_path={f['garbage_ckpt']}"],
        "refusing checkpoint",
    ),
    (
        "predict weights missing",
        lambda f: [
            "predict",
            "--weights",
            f"{f['folder']}/model.ckpt",
            "--source",
            str(f["image"]),
            "--output",
            f"{f['folder']}/out",
        ],
        "model.ckpt",
    ),
    (
        "predict source missing",
        lambda f: [
            "predict",
            "--weights",
            str(f["garbage_ckpt"]),
            "--source",
            f"{f['folder']}/nope.jpg",
            "--output",
            f"{f['folder']}/out",
        ],
        "nope.jpg",
    ),
    (
        "predict output is a file",
        lambda f: [
            "predict",
            "--model",
            "ssdlite_mobilenet_v2",
            "--source",
            str(f["image"]),
            "--output",
            str(f["file"]),
        ],
        "is a file, not a folder",
    ),
    (
        "predict weights not a checkpoint",
        lambda f: [
            "predict",
            "--weights",
            str(f["garbage_ckpt"]),
            "--source",
            str(f["image"]),
            "--output",
            f"{f['folder']}/out",
        ],
        "garbage.ckpt",
    ),
    (
        "evaluate ground truth missing",
        lambda f: ["evaluate", "detection", "--gt", f"{f['folder']}/gt.json", "--predictions", str(f["not_json"])],
        "gt.json",
    ),
    (
        "evaluate predictions not JSON",
        lambda f: ["evaluate", "detection", "--gt", str(f["gt"]), "--predictions", str(f["not_json"])],
        "predictions.json",
    ),
    ("export weights missing", lambda f: ["export", "--weights", f"{f['folder']}/model.ckpt"], "model.ckpt"),
    (
        "configs copy unknown name",
        lambda f: ["configs", "copy", "ssdlite_mobilenetv2_vco"],
        "did you mean ssdlite_mobilenetv2_voc",
    ),
    (
        "configs copy onto an existing file",
        lambda f: ["configs", "copy", "ssdlite_mobilenetv2_voc", str(f["file"])],
        "already exists",
    ),
    ("demo with no time", lambda f: ["demo", "--minutes", "0", "--out", f"{f['folder']}/demo"], "--minutes"),
    ("unknown command", lambda f: ["trian"], "unknown command"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _files(tmp_path_factory.mktemp("mistakes"))


def run_mistake(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_cli(), *argv], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def forked() -> Iterator[ForkedCli]:
    server = ForkedCli(_env())
    yield server
    server.close()


def _assert_one_line(out: Any, fragment: str) -> None:
    lines = out.stderr.splitlines()
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]
    assert out.returncode == 2, out.stderr
    assert fragment in lines[0], lines[0]
    assert lines[0].startswith("mobilevision"), lines[0]


@pytest.mark.parametrize(("argv", "fragment"), [(m[1], m[2]) for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_is_one_line_exit_2(
    files: dict[str, Path], forked: ForkedCli, argv: Callable[[dict[str, Path]], list[str]], fragment: str
) -> None:
    _assert_one_line(forked.run(argv(files), cwd=files["folder"]), fragment)


def test_importing_the_commands_prints_nothing(forked: ForkedCli) -> None:
    """What the forked rows cannot show themselves: the imports before their fork wrote nothing on stderr."""
    assert forked.import_stderr == ""


@pytest.mark.slow
def test_mistake_from_a_cold_start_of_the_console_script(files: dict[str, Path]) -> None:
    _, argv, fragment = MISTAKES[0]
    _assert_one_line(run_mistake(argv(files), cwd=files["folder"]), fragment)


def test_table_has_at_least_fifteen_distinct_mistakes() -> None:
    assert len({m[0] for m in MISTAKES}) == len(MISTAKES) >= 15


if __name__ == "__main__":  # docs/troubleshooting.md's table: `python -m tests.test_user_errors`
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = _files(Path(tmp))
        print("| mistake | what mobilevision says |\n|---|---|")
        for name, build, _ in MISTAKES:
            result = run_mistake(build(found), cwd=found["folder"])
            message = result.stderr.strip().replace(tmp, "/tmp/x").replace("|", "\\|")
            print(f"| {name} | `` {message} `` |")  # double backticks: messages quote commands in backticks
