"""The demo (`mobilevision demo`, what `make demo` runs): train, evaluate and use the models on the synthetic shapes.

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

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilevision.io import atomic_path, atomic_write_json


@dataclass(frozen=True)
class Stage:
    """One model of the demo: its shipped config, the metrics it reports, what its pictures draw.

    Attributes:
        config: a shipped config (package data, `mobilevision.configs`), so the demo runs from a pip install.
        metrics: validation metrics said after evaluating (the first is the one extra evaluations report too).
        extra_evaluations: held-out evaluations beyond the training configuration's own, name -> CLI arguments;
            their metrics are reported as `<name>/<metric>` (e.g. `val_mf/miou`).
        boxes: whether its pictures draw boxes (ground truth and predicted).
        masks: whether its pictures overlay masks (boxes, if drawn too, go over the mask).
    """

    config: str
    metrics: tuple[str, ...]
    boxes: bool = False
    masks: bool = False
    extra_evaluations: dict[str, list[str]] = field(default_factory=dict)


# Stage name (its folder under --out, its key in summary.json) -> Stage. Validation during training stays
# single-scale; MF (costs ~17x) is an extra evaluation.
STAGES: dict[str, Stage] = {
    "detection": Stage("ssdlite_mobilenetv2_shapes", ("val/map",), boxes=True),
    "segmentation": Stage(
        "deeplabv3_mobilenetv2_shapes",
        ("val/miou",),
        masks=True,
        extra_evaluations={"val_mf": ["--model.init_args.multi_scale_flip=true"]},
    ),
    "multitask": Stage("ssdlite_deeplabv3_shapes", ("val/map", "val/miou"), boxes=True, masks=True),
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

    stage = STAGES[task]
    key = stage.metrics[0]
    config = _config(stage.config)
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
    for shown in stage.metrics:
        _say(f"{task}: {shown} = {metrics.get(shown, float('nan')):.4f}")
    for name, extra in stage.extra_evaluations.items():
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

    from mobilevision.cli.predict import main as predict_main
    from mobilevision.data.decode import read_image
    from mobilevision.inference.draw import contact_sheet, draw_detections, overlay_with_legend, write_image
    from mobilevision.inference.predictor import Predictor

    video = make_video(out / "video" / "shapes_pan.mp4")
    held_out = sorted((data_root / "val" / "images").iterdir())[:8]
    truth, names = _ground_truth(data_root)
    written: dict[str, str] = {"input_video": str(video)}
    for task, stage in STAGES.items():
        checkpoint = out / task / "checkpoints" / "last.ckpt"
        target = out / "video" / task
        predict_main(["--weights", str(checkpoint), "--source", str(video), "--output", str(target), "--no-progress"])
        written[f"{task}_video"] = str(target)
        predictor = Predictor(checkpoint, score_threshold=0.4)
        tiles, captions = [], []
        for path, result in zip(held_out, predictor([str(p) for p in held_out])):
            image = read_image(path)
            truth_tile, predicted_tile = image, image
            if stage.masks:
                with Image.open(data_root / "val" / "masks" / f"{path.stem}.png") as png:
                    true_mask = np.asarray(png)  # palette PNG: the indices are the class ids
                shown = sorted({int(v) for m in (true_mask, result["mask"]) for v in np.unique(m) if 0 < v < 255})
                truth_tile = overlay_with_legend(image, true_mask, names, labels=shown)
                predicted_tile = overlay_with_legend(image, result["mask"], names, labels=shown)
            if stage.boxes:  # over the mask if there is one (the legend strip is below the image: same pixels)
                truth_tile = draw_detections(truth_tile, truth.get(path.name, {}), show_scores=False)
                predicted_tile = draw_detections(predicted_tile, result)
            tiles += [truth_tile, predicted_tile]
            captions += ["ground truth", "prediction"]
        sheet = out / f"contact_sheet_{task}.jpg"
        write_image(sheet, contact_sheet(tiles, cols=4, captions=captions))
        written[f"{task}_contact_sheet"] = str(sheet)
    return written
