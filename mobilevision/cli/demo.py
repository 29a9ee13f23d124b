"""`mobilevision demo`: its options and its closing summary; the stages are `mobilevision.demo`'s."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilevision import demo
from mobilevision.errors import UserError
from mobilevision.io import atomic_write_json, check_writable_folder

DESCRIPTION = "`mobilevision demo` (what `make demo` runs): train, evaluate and use the models on the synthetic shapes."


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilevision demo", description=DESCRIPTION)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (runs/demo)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model in minutes (5)")
    parser.add_argument("--data", type=Path, default=Path("data_cache/shapes"), help="generated data (cached)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--skip-showcase", action="store_true", help="train and evaluate only")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra LightningCLI argument for both models' runs, repeatable, e.g. "
        "--override=--data.init_args.num_train=500",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes}; e.g. --minutes 0.1 for a smoke run")
    check_writable_folder(args.out, "--out")
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    started = time.monotonic()
    summary: dict[str, Any] = {"minutes_per_model": args.minutes}
    for task in demo.STAGES:
        metrics = demo.train_and_evaluate(
            task, args.out, minutes=args.minutes, data_root=args.data, overrides=args.override
        )
        summary[task] = {k: v for k, v in metrics.items() if k.startswith("val")}
        summary[task]["curve"] = str(args.out / task / "curve.csv")
        summary[task]["checkpoint"] = str(args.out / task / "checkpoints" / "last.ckpt")
        summary[task]["plots"] = sorted(str(p) for p in (args.out / task / "plots").glob("*.png"))
    if not args.skip_showcase:
        summary["outputs"] = demo.showcase(args.out, args.data)
    summary["wall_minutes"] = round((time.monotonic() - started) / 60, 2)
    atomic_write_json(args.out / "summary.json", summary)
    det, seg, joint = summary["detection"], summary["segmentation"], summary["multitask"]
    print(
        f"\nmobilevision demo finished in {summary['wall_minutes']} min. Held-out generated split:\n"
        f"  detection    mAP@0.5 {det.get('val/map_50', 0):.3f}   mAP@[.5:.95] {det.get('val/map', 0):.3f}\n"
        f"  segmentation mIoU {seg.get('val/miou', 0):.3f}   pixel accuracy {seg.get('val/pixel_accuracy', 0):.3f}"
        f"   (single scale)\n"
        f"               mIoU {seg.get('val_mf/miou', 0):.3f}   "
        f"pixel accuracy {seg.get('val_mf/pixel_accuracy', 0):.3f}"
        f"   (MF: scales 0.5-1.75 and flips)\n"
        f"  joint model  mAP@0.5 {joint.get('val/map_50', 0):.3f}   mAP@[.5:.95] {joint.get('val/map', 0):.3f}   "
        f"mIoU {joint.get('val/miou', 0):.3f}   (one backbone pass, one training budget)\n"
        f"Outputs in {args.out}/:\n"
        f"  summary.json, detection/, segmentation/ and multitask/ (checkpoints/last.ckpt, curve.csv, logs/,\n"
        f"  plots/*.png), video/ (annotated videos), contact_sheet_{{detection,segmentation,multitask}}.jpg",
        file=sys.stdout,
    )
    return 0
