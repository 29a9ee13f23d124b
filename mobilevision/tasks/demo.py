"""`mobilevision demo` (what `make demo` runs): train, evaluate and use the models on the synthetic shapes.

1. trains SSDLite (the shipped config ssdlite_mobilenetv2_shapes) from random weights for `--minutes`,
2. evaluates it on a held-out generated split (COCO mAP),
3. does the same for Mobile DeepLabv3 (deeplabv3_mobilenetv2_shapes, mIoU), once on
   single-scale inputs and once with the paper's MF inference (six scales 0.5 to 1.75, each also flipped),
4. does the same for the joint model, SSDLite and Mobile DeepLabv3 on one backbone pass
   (ssdlite_deeplabv3_shapes: mAP and mIoU from one network, trained for the same budget as one of the others),
5. runs the trained models on a generated video (a camera panning over a large shapes scene) and on held-out
   images, writing annotated videos and contact sheets.

Every stage is resumable: a demo interrupted at any point (Ctrl-C, kill -9, power loss) and started again resumes
training from its last checkpoint and skips the stages already done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.errors import UserError
from mobilevision.io import atomic_path, atomic_write_json, check_writable_folder

# The shipped configs (package data, `mobilevision.configs`), so the demo runs from a pip install in any folder.
STAGES = {
    "detection": ("ssdlite_mobilenetv2_shapes", "val/map"),
    "segmentation": ("deeplabv3_mobilenetv2_shapes", "val/miou"),
    "multitask": ("ssdlite_deeplabv3_shapes", "val/map"),
}
# Held-out evaluations beyond the training configuration's own: name -> CLI arguments. Their metrics are reported
# as `<name>/<metric>` (e.g. `val_mf/miou`). Validation during training stays single-scale (MF costs ~17x).
EXTRA_EVALUATIONS = {
    "segmentation": {"val_mf": ["--model.init_args.multi_scale_flip=true"]},
}


def _config(name: str) -> Path:
    from mobilevision.configs import resolve_config

    return resolve_config(name)


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_and_evaluate(
    task: str, out: Path, *, minutes: float, data_root: Path, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Fit (resuming when a checkpoint is there) and validate one task; returns the validation metrics.

    `overrides` are extra LightningCLI arguments for every run of the task (e.g. `--data.init_args.num_train=500`).
    """
    from mobilevision.training import run_cli

    config_name, key = STAGES[task]
    config = _config(config_name)
    run_dir = out / task
    done = run_dir / "fit.done"
    last = run_dir / "checkpoints" / "last.ckpt"
    common = [
        "-c",
        str(config),
        f"--trainer.default_root_dir={run_dir}",
        f"--data.init_args.root={data_root}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        *overrides,
    ]
    if not done.exists():
        budget = time.strftime("%H:%M:%S", time.gmtime(round(minutes * 60)))
        args = [
            "fit",
            *common,
            f"--trainer.max_time=00:{budget}",
            "--trainer.callbacks+=mobilevision.training.CurveLogger",
        ]
        if last.exists():
            _say(f"{task}: resuming from {last}")
            args.append("--ckpt_path=last")
        else:
            _say(f"{task}: training from random weights for {minutes:g} minutes")
        run_cli(args)
        atomic_write_json(done, {"finished": time.time()})
    _say(f"{task}: evaluating {last} on the held-out split")
    run_cli(["validate", *common, f"--ckpt_path={last}", "--trainer.logger=false"])
    metrics = json.loads((run_dir / "validate_metrics.json").read_text())
    for shown in (key, "val/miou") if task == "multitask" else (key,):
        _say(f"{task}: {shown} = {metrics.get(shown, float('nan')):.4f}")
    for name, extra in EXTRA_EVALUATIONS.get(task, {}).items():
        _say(f"{task}: evaluating again, {' '.join(extra)}")
        run_cli(["validate", *common, f"--ckpt_path={last}", "--trainer.logger=false", *extra])
        more = json.loads((run_dir / "validate_metrics.json").read_text())
        metrics.update({k.replace("val/", f"{name}/", 1): v for k, v in more.items() if k.startswith("val/")})
        _say(f"{task}: {key.replace('val/', f'{name}/', 1)} = {more.get(key, float('nan')):.4f}")
    return metrics


def make_video(path: Path, *, frames: int = 120, size: int = 192, seed: int = 7) -> Path:
    """A generated video: a window sliding over a large shapes scene (no file of its own is needed)."""
    import cv2

    from mobilevision.data.decode import read_image
    from mobilevision.data.shapes import ensure_shapes

    scene_root = path.parent / "scene"
    scene = ensure_shapes(
        scene_root, num_images=1, seed=seed, image_size=(3 * size, 4 * size), objects=(40, 60), max_object_fraction=0.12
    )
    image = read_image(next(iter(sorted(scene.images.iterdir()))))
    height, width = image.shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (size, size))
        for i in range(frames):
            t = i / max(1, frames - 1)
            # A loop over the scene: right along the top, down, back left along the bottom.
            x = round((width - size) * (t * 2 if t < 0.5 else 2 - t * 2))
            y = round((height - size) * min(1.0, t * 2))
            writer.write(cv2.cvtColor(np.ascontiguousarray(image[y : y + size, x : x + size]), cv2.COLOR_RGB2BGR))
        writer.release()
    return path


def _ground_truth(data_root: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The held-out split's boxes per image file name, as a Predictor result (x1 y1 x2 y2, labels, names), and the
    class names by category id (the shapes' ids are 1..K, the same as the models' labels)."""
    coco = json.loads((data_root / "val" / "annotations.json").read_text())
    names = ["background"] + [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    truth: dict[str, dict[str, Any]] = {name: {"boxes": [], "labels": [], "names": []} for name in files.values()}
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        entry = truth[files[annotation["image_id"]]]
        entry["boxes"].append([x, y, x + w, y + h])
        entry["labels"].append(annotation["category_id"])
        entry["names"].append(names[annotation["category_id"]])
    return truth, names


def showcase(out: Path, data_root: Path) -> dict[str, str]:
    """Annotated videos of the trained models, and contact sheets pairing each held-out image's ground truth
    (left) with the prediction (right); segmentation overlays carry a legend of the classes shown, the joint
    model's boxes are drawn over its mask."""
    from PIL import Image

    from mobilevision.data.decode import read_image
    from mobilevision.inference.cli import main as predict_main
    from mobilevision.inference.draw import contact_sheet, draw_detections, overlay_with_legend, write_image
    from mobilevision.inference.predictor import Predictor

    video = make_video(out / "video" / "shapes_pan.mp4")
    held_out = sorted((data_root / "val" / "images").iterdir())[:8]
    truth, names = _ground_truth(data_root)
    written: dict[str, str] = {"input_video": str(video)}
    for task in STAGES:
        checkpoint = out / task / "checkpoints" / "last.ckpt"
        target = out / "video" / task
        predict_main(["--weights", str(checkpoint), "--source", str(video), "--output", str(target), "--no-progress"])
        written[f"{task}_video"] = str(target)
        predictor = Predictor(checkpoint, score_threshold=0.4)
        tiles, captions = [], []
        for path, result in zip(held_out, predictor([str(p) for p in held_out])):
            image = read_image(path)
            if task == "detection":
                tiles += [
                    draw_detections(image, truth.get(path.name, {}), show_scores=False),
                    draw_detections(image, result),
                ]
            else:
                with Image.open(data_root / "val" / "masks" / f"{path.stem}.png") as png:
                    true_mask = np.asarray(png)  # palette PNG: the indices are the class ids
                shown = sorted({int(v) for m in (true_mask, result["mask"]) for v in np.unique(m) if 0 < v < 255})
                truth_tile = overlay_with_legend(image, true_mask, names, labels=shown)
                predicted_tile = overlay_with_legend(image, result["mask"], names, labels=shown)
                if task == "multitask":  # boxes over the mask (the legend strip is below the image: same pixels)
                    truth_tile = draw_detections(truth_tile, truth.get(path.name, {}), show_scores=False)
                    predicted_tile = draw_detections(predicted_tile, result)
                tiles += [truth_tile, predicted_tile]
            captions += ["ground truth", "prediction"]
        sheet = out / f"contact_sheet_{task}.jpg"
        write_image(sheet, contact_sheet(tiles, cols=4, captions=captions))
        written[f"{task}_contact_sheet"] = str(sheet)
    return written


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilevision demo", description=__doc__.split("\n")[0])
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
    for task in STAGES:
        metrics = train_and_evaluate(task, args.out, minutes=args.minutes, data_root=args.data, overrides=args.override)
        summary[task] = {k: v for k, v in metrics.items() if k.startswith("val")}
        summary[task]["curve"] = str(args.out / task / "curve.csv")
        summary[task]["checkpoint"] = str(args.out / task / "checkpoints" / "last.ckpt")
        summary[task]["plots"] = sorted(str(p) for p in (args.out / task / "plots").glob("*.png"))
    if not args.skip_showcase:
        summary["outputs"] = showcase(args.out, args.data)
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
