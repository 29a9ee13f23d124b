"""`mobilevision profile`: parameters and MAdds of the paper's configurations (or of one model), as a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str]) -> int:
    from mobilevision import profile
    from mobilevision.models import MODELS

    parser = argparse.ArgumentParser(prog="mobilevision profile", description=profile.__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--model", choices=list(MODELS), help="profile one configuration instead of the paper's")
    parser.add_argument("--input-size", type=int, default=None, help="square input size (default 224/320/512)")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--width-mult", type=float, default=None)
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=None, help="segmentation only")
    parser.add_argument("--atrous-rates", type=int, nargs="*", default=None, help="segmentation only")
    parser.add_argument("--mf", action="store_true", help="multi-scale + flip inference (segmentation)")
    args = parser.parse_args(argv)
    if args.model:
        kwargs: dict[str, Any] = {}
        for key in ("num_classes", "width_mult", "output_stride", "atrous_rates"):
            if getattr(args, key) is not None:
                kwargs[key] = tuple(args.atrous_rates) if key == "atrous_rates" else getattr(args, key)
        try:
            rows = profile.model_rows(args.model, args.input_size, mf=args.mf, **kwargs)
        except TypeError as error:
            parser.error(f"{args.model} does not take that option ({error})")
    else:
        rows = profile.paper_rows() + profile.joint_rows() + profile.v3_rows()
    print(json.dumps([r.to_dict() for r in rows], indent=2) if args.json else profile.format_table(rows))
    return 0
