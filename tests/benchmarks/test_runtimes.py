"""`mobilevision.benchmarks.runtimes`: where its exports are cached."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilevision.benchmarks.runtimes import cache_stem


def test_two_checkpoints_of_the_same_name_get_their_own_exports(tmp_path: Path) -> None:
    a = cache_stem(argparse.Namespace(cache=tmp_path, weights=tmp_path / "det" / "last.ckpt", model=None))
    b = cache_stem(argparse.Namespace(cache=tmp_path, weights=tmp_path / "seg" / "last.ckpt", model=None))
    assert a != b and a.parent == b.parent == tmp_path and a.name.startswith("last-")
    same = cache_stem(argparse.Namespace(cache=tmp_path, weights=tmp_path / "det" / ".." / "det" / "last.ckpt"))
    assert same == a
    assert cache_stem(argparse.Namespace(cache=tmp_path, weights=None, model="detector")) == tmp_path / "detector"
