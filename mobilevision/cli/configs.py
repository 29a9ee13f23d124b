"""`mobilevision configs [list]` prints the shipped configs; `mobilevision configs copy NAME [DEST]` copies one out
for editing."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mobilevision.configs import CONFIG_DIR, config_paths, copy_config, first_comment


def main(argv: Sequence[str]) -> int:
    """`mobilevision configs [list]` prints the shipped configs; `mobilevision configs copy NAME [DEST]` copies one."""
    parser = argparse.ArgumentParser(prog="mobilevision configs", description="list or copy the shipped configs")
    commands = parser.add_subparsers(dest="action")
    commands.add_parser("list", help="list the shipped configs (the default)")
    copy = commands.add_parser("copy", help="copy a shipped config out for editing")
    copy.add_argument("name", help="a shipped config's name, e.g. ssdlite_mobilenetv2_shapes")
    copy.add_argument("dest", nargs="?", default=None, help="file or folder to write (default: the current folder)")
    copy.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(list(argv))
    if args.action == "copy":
        target = copy_config(args.name, args.dest, overwrite=args.force)
        print(f"wrote {target}; train with: mobilevision fit -c {target}")
        return 0
    paths = config_paths()
    width = max(len(p.stem) for p in paths)
    for path in paths:
        print(f"{path.stem:<{width}}  {path.parent.name:<12}  {first_comment(path)}")
    print(
        f"\n{len(paths)} configs in {CONFIG_DIR}. Use one with `mobilevision fit -c NAME`, "
        "or `mobilevision configs copy NAME` to edit a copy."
    )
    return 0
