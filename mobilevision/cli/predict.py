"""`mobilevision predict`: run a checkpoint, an ONNX file or an untrained named model on images, folders, globs,
video files, cameras or stream URLs, writing annotated images/video, COCO-results JSON, palette masks and overlays.

With `-c/--config` the command is LightningCLI's `predict` instead (`mobilevision.cli.fit.predict`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilevision.errors import UserError, WeightsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilevision predict",
        description="Run a model on an image, a folder, a glob, a video file, a camera index or a stream URL.",
    )
    which = parser.add_argument_group("model (one of --weights or --model)")
    which.add_argument(
        "--weights",
        type=Path,
        help="a mobilevision checkpoint (.ckpt/.pt) or an exported .onnx file; "
        "with --model, a plain state_dict for that model",
    )
    which.add_argument("--model", help="a model name from build_model (untrained unless --weights is given)")
    which.add_argument("--num-classes", type=int, default=None, help="classes incl. background, with --model")
    which.add_argument("--width-mult", type=float, default=None, help="width multiplier, with --model")
    parser.add_argument("--source", required=True, help="image, folder, glob, video file, camera index or URL")
    listed = parser.add_argument_group(
        "dataset lists (predict on a split, to evaluate; --source is then its image folder)"
    ).add_mutually_exclusive_group()
    listed.add_argument(
        "--annotations",
        type=Path,
        help="a COCO-format json: predict on its images, and write their "
        "ids into predictions.json (file_name is relative to --source)",
    )
    listed.add_argument(
        "--split-list",
        type=Path,
        help="a split list (VOC ImageSets/.../val.txt): predict on "
        "<source>/<id>.jpg for each id; masks are named by id",
    )
    seg = parser.add_argument_group("segmentation (default: as the checkpoint was evaluated)")
    seg.add_argument(
        "--output-stride",
        type=int,
        choices=(8, 16, 32),
        default=None,
        help="run the backbone at this output stride (the paper's OS=8 rows; torch backend)",
    )
    seg.add_argument(
        "--mf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the paper's MF inference: scales 0.5-1.75 and left-right flips, probabilities averaged",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for the outputs (created)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="detection score threshold (0.3)")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime", "litert", "executorch"),
        default=None,
        help="default by the file: onnxruntime for .onnx, litert for .tflite, executorch for .pte, torch otherwise",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="network input size (default: the checkpoint's)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds without a frame before a video, camera or stream counts as stalled (10)",
    )
    parser.add_argument(
        "--save-txt",
        action="store_true",
        help="detection on images: also labels/<image stem>.txt, YOLO rows 'class cx cy w h score' (normalised; "
        "class = index in the model's class list without background) beside predictions.json",
    )
    parser.add_argument("--show", action="store_true", help="also show the predictions in a window")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def build_predictor(args: argparse.Namespace):  # noqa: ANN201 - Predictor, imported lazily
    """The Predictor the arguments describe (loading only through weights-only paths)."""
    from mobilevision.inference.predictor import Predictor

    options = {
        "backend": args.backend,
        "score_threshold": args.score_threshold,
        "device": args.device,
        "input_size": tuple(args.input_size) if args.input_size else None,
        "num_threads": args.threads,
        "output_stride": args.output_stride,
        "multi_scale_flip": args.mf,
    }
    if args.model is None:
        return Predictor(args.weights, **options)
    from mobilevision.checkpoint import model_from_name
    from mobilevision.models.backbones.mobilenet_v2 import load_state_dict_file

    model, meta = model_from_name(
        args.model, num_classes=args.num_classes, width_mult=args.width_mult, purpose="run by predict"
    )
    kwargs = meta.model_kwargs
    if args.weights is not None:
        if args.weights.suffix.lower() == ".onnx":
            raise UserError("--model with an .onnx file: the ONNX file already holds its model, drop --model")
        state = load_state_dict_file(args.weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise WeightsError(
                f"{args.weights}: weights do not fit {args.model} {kwargs}: "
                f"{str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else error}"
            ) from None
    return Predictor(model.eval(), meta=meta, **options)


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if any(a in ("-c", "--config") or a.startswith("--config=") for a in argv):
        # LightningCLI's predict (a config file with data and trainer): the lead's training entry point.
        from mobilevision.cli.fit import predict

        return int(predict(argv) or 0)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.weights is None and args.model is None:
        parser.error("give --weights CKPT_OR_ONNX, or --model NAME (optionally with --weights STATE_DICT)")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.model is None and (args.num_classes is not None or args.width_mult is not None):
        parser.error("--num-classes and --width-mult go with --model (a checkpoint knows its own)")

    from mobilevision.inference.listing import listed_images
    from mobilevision.inference.sinks import predict_source
    from mobilevision.inference.sources import ImageSource, open_source
    from mobilevision.io import check_writable_folder

    check_writable_folder(args.output, "--output")  # before the source is opened or the model loaded

    # The source first: a wrong path fails before the model loads.
    if args.annotations is not None or args.split_list is not None:
        source: Any = listed_images(args.source, annotations=args.annotations, split_list=args.split_list)
    else:
        source = open_source(args.source, timeout=args.timeout)
    if isinstance(source, ImageSource) and len(source.paths) > 1 and source.image_ids is None:
        source.exclude(args.output)  # never read back our own outputs from a previous run
        if not source.paths:
            raise UserError(f"{args.source}: no images outside the output folder {args.output}")
    try:
        predictor = build_predictor(args)
    except BaseException:
        source.close()
        raise
    mask_classes = predictor.meta.mask_class_names
    classes = f"{len(predictor.class_names)} classes" + (f" + {len(mask_classes)} mask classes" if mask_classes else "")
    print(
        f"mobilevision predict: {predictor.task} model ({predictor.backend}), {classes}, "
        f"input {predictor.input_size[0]}x{predictor.input_size[1]}, source {source.description} ({source.kind})",
        file=sys.stderr,
    )
    summary = predict_source(predictor, source, args.output, show=args.show, progress=not args.no_progress)
    if args.save_txt:
        written = save_yolo_txt(args.output)
        summary.written.append(f"{args.output / 'labels'}/ ({written} YOLO label files)")
    print(summary.format(), file=sys.stderr)
    return summary.exit_code


def save_yolo_txt(output: Path) -> int:
    """Write `output/labels/<stem>.txt` from the `predictions.json`, `images.json` and `classes.json` predict wrote:
    one `class cx cy w h score` row per detection (Ultralytics' `--save-txt --save-conf`), an empty file for an
    image without detections. Returns the number of files written.

    Raises:
        UserError: no image predictions to convert (a video source, a segmentation model).
    """
    from mobilevision.data.jsonio import load_json
    from mobilevision.io import atomic_write_text

    if not (output / "images.json").is_file() or not (output / "predictions.json").is_file():
        raise UserError("--save-txt: no detection results on images were written (a video, or not a detector)")
    images, results = load_json(output / "images.json"), load_json(output / "predictions.json")
    classes = load_json(output / "classes.json")
    category_ids = classes.get("category_ids") or list(range(len(classes.get("class_names", []))))
    index = {int(cid): position - 1 for position, cid in enumerate(category_ids) if position > 0}
    rows: dict[int, list[str]] = {int(i["id"]): [] for i in images}
    sizes = {int(i["id"]): (i["width"], i["height"]) for i in images}
    for r in results:
        width, height = sizes[r["image_id"]]
        x, y, w, h = r["bbox"]
        rows[r["image_id"]].append(
            f"{index[int(r['category_id'])]} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} "
            f"{w / width:.6f} {h / height:.6f} {r['score']:.5f}"
        )
    used: set[str] = set()
    for image in images:
        stem = Path(str(image["file_name"])).stem
        name = stem if stem not in used else f"{stem}_{image['id']}"
        used.add(name)
        atomic_write_text(output / "labels" / f"{name}.txt", "".join(f"{row}\n" for row in rows[int(image["id"])]))
    return len(images)
