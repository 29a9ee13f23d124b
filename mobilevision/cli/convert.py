"""`mobilevision convert tf PREFIX --output OUT`: a TF reference checkpoint (the paper's model zoos) as mobilevision's.

SSDLite (the COCO detector) becomes a detection checkpoint (`.ckpt`: predict, validate, export, `init_from`), its 91
outputs the COCO category ids; DeepLab a segmentation checkpoint (`.ckpt`: predict, validate, export, `init_from`);
the ImageNet classifier a classification checkpoint (`.ckpt`: predict, export) or, named `.pt`, a torchvision-layout
state_dict (1000 classes) that serves as `backbone_weights`. See docs/pretrained.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from mobilevision.errors import UserError


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilevision convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=("tf",), help="the framework the checkpoint comes from")
    parser.add_argument("prefix", type=Path, help="the TF checkpoint prefix, e.g. .../model.ckpt")
    parser.add_argument(
        "--output", type=Path, required=True, help="the file to write (.ckpt; .pt: the classifier's state_dict)"
    )
    parser.add_argument("--width", type=float, default=None, help="expected width multiplier (checked)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16), default=16, help="DeepLab's (16 or 8)")
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="input size: the detector's fixed resize (default 300, the zoo's); DeepLab and the classifier: a "
        "multiple of 16 (default 512, the zoo's 513, and 224)",
    )
    parser.add_argument(
        "--labels",
        choices=("coco91", "coco80"),
        default="coco91",
        help="the COCO detector's outputs: the zoo's 91 (index = COCO category id, 10 unused) or background + COCO "
        "2017's 80 categories (what COCO's annotations and the COCO config's 81 classes use: validate, fine-tune)",
    )
    args = parser.parse_args(list(argv))

    from mobilevision.checkpoint import ModelMeta, save_checkpoint
    from mobilevision.convert.tf_convert import VOC_CLASSES, convert_tf
    from mobilevision.io import atomic_path

    if args.input_size is not None and args.input_size < 33:
        raise UserError(f"--input-size {args.input_size}: the TF reference needs at least 33 pixels")
    model, kind, kwargs = convert_tf(
        args.prefix, width_mult=args.width, output_stride=args.output_stride, coco80=args.labels == "coco80"
    )
    if kind == "ssdlite":
        # Every image is resized to this one size, so TF's size-dependent SAME padding is the traced one.
        return _write_detector(args, model, kwargs)
    if args.input_size is not None and args.input_size % 16:
        # TF SAME padding depends on each map's size parity; ONNX bakes the traced one. Multiples of 16 (what the
        # predictor pads to) keep every stride-2 input even, so the exported graph stays exact (docs/pretrained.md).
        raise UserError(
            f"--input-size {args.input_size}: the {kind} pads images to a multiple of 16, and a TF-exact model's "
            f"padding follows the size; give a multiple of 16 (e.g. {max(16, round(args.input_size / 16) * 16)})"
        )
    if kind == "classifier" and args.output.suffix in (".pt", ".pth"):
        with atomic_path(args.output) as tmp:
            torch.save(model.state_dict(), tmp)
        print(f"wrote {args.output}: mobilenet_v2 {kwargs} from {args.prefix} (1000 torchvision classes)")
        return 0
    if kind == "classifier":
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        from mobilevision.models.classifier import ImageClassifier

        classifier = ImageClassifier(model, tf_exact=True)
        size = (args.input_size or 224,) * 2
        meta = ModelMeta.for_model(
            classifier, model_name="image_classifier_mobilenet_v2", model_kwargs=kwargs, input_size=size
        )
        meta.class_names = list(_IMAGENET_CATEGORIES)
        save_checkpoint(args.output, classifier, meta)
        print(f"wrote {args.output}: image_classifier_mobilenet_v2 {kwargs} from {args.prefix} (ImageNet's 1000)")
        return 0
    meta = ModelMeta.for_model(
        model, model_name="deeplabv3_mobilenet_v2", model_kwargs=kwargs, input_size=(args.input_size or 512,) * 2
    )
    if meta.num_classes == len(VOC_CLASSES):
        meta.class_names = list(VOC_CLASSES)
    meta.inference = {"pad_multiple": args.output_stride, "output_stride": args.output_stride}
    save_checkpoint(args.output, model, meta)
    print(f"wrote {args.output}: deeplabv3_mobilenet_v2 {kwargs} from {args.prefix}")
    return 0


def _write_detector(args: argparse.Namespace, model: torch.nn.Module, kwargs: dict) -> int:
    from mobilevision.checkpoint import ModelMeta, save_checkpoint
    from mobilevision.convert.tf_ssd import COCO_80_IDS, COCO_91_CLASSES

    size = args.input_size or 300
    meta = ModelMeta.for_model(model, model_name="ssdlite_mobilenet_v2", model_kwargs=kwargs, input_size=(size,) * 2)
    ids = [0, *COCO_80_IDS] if args.labels == "coco80" else list(range(len(COCO_91_CLASSES)))
    meta.class_names = [COCO_91_CLASSES[i] for i in ids]
    meta.category_ids = ids  # label k is COCO category id ids[k] (coco91: k itself, the 10 gaps never trained)
    save_checkpoint(args.output, model, meta)
    width = kwargs["width_mult"]
    print(f"wrote {args.output}: ssdlite_mobilenet_v2 width {width} from {args.prefix} ({len(ids)} outputs, COCO ids)")
    return 0
