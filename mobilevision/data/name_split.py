"""Deterministic train/val splits of one folder by file name, and the list files that record them.

- `"hash"`: a name is held out when the first 8 bytes of its SHA-1, as a fraction of 2**64, fall below
  `val_fraction`. A name's side never depends on the other names: adding files never moves an old one.
- `"every_5th"`: the names sorted, every fifth one held out (the 2nd, 7th, ...: sorted index % 5 == 1); the
  fixed 80/20 split the kangaroo numbers use. Adding files can move others (it is a rule on the sorted list).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from mobilevision.errors import DatasetError, InvalidValueError

SPLIT_RULES = ("hash", "every_5th")


def name_fraction(name: str) -> float:
    """A stable number in [0, 1) for a file name (SHA-1 of its UTF-8 bytes, posix separators)."""
    digest = hashlib.sha1(name.replace("\\", "/").encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_names(names: Sequence[str], *, val_fraction: float = 0.2, rule: str = "hash") -> tuple[list[str], list[str]]:
    """(train names, val names), each sorted.

    Raises:
        InvalidValueError: an unknown rule or a fraction outside (0, 1).
        DatasetError: a split that comes out empty (too few images for the fraction).
    """
    if rule not in SPLIT_RULES:
        raise InvalidValueError(f"split rule {rule!r} is not one of {SPLIT_RULES}")
    if rule == "hash" and not 0 < val_fraction < 1:
        raise InvalidValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    ordered = sorted(set(names))
    if rule == "every_5th":
        held = {n for i, n in enumerate(ordered) if i % 5 == 1}
    else:
        held = {n for n in ordered if name_fraction(n) < val_fraction}
    train, val = [n for n in ordered if n not in held], [n for n in ordered if n in held]
    if not train or not val:
        raise DatasetError(
            f"the {rule} split of {len(ordered)} images (val_fraction={val_fraction}) leaves "
            f"{'no training' if not train else 'no validation'} image"
        )
    return train, val


def write_split_lists(folder: str | os.PathLike[str], splits: dict[str, Sequence[str]]) -> list[Path]:
    """Write `folder/<split>.txt`, one file name a line (what `read_id_list` and `predict --split-list` read)."""
    from mobilevision.io import atomic_write_text

    out = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        path = Path(folder) / f"{split}.txt"
        atomic_write_text(path, "".join(f"{n}\n" for n in names))
        out.append(path)
    return out


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """File names of a list file (one a line, blank lines and `#` comments ignored), as written.

    Raises:
        DatasetError: missing or unreadable, naming it.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read split list ({error})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
