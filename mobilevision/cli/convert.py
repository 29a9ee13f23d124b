"""`mobilevision convert tf PREFIX --output OUT`: a TF reference checkpoint (the paper's model zoos) as mobilevision's.

DeepLab becomes a segmentation checkpoint (`.ckpt`: predict, validate, export, `init_from`); the ImageNet classifier a
classification checkpoint (`.ckpt`: predict, export) or, named `.pt`, a torchvision-layout state_dict (1000
classes) that serves as `backbone_weights`. See docs/pretrained.md.
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
        default=512,
        help="input size, a multiple of 16 (DeepLab: 512, the zoo's 513; classifier: 224)",
    )
    args = parser.parse_args(list(argv))

    from mobilevision.checkpoint import ModelMeta, save_checkpoint
    from mobilevision.convert.tf_convert import VOC_CLASSES, convert_tf
    from mobilevision.io import atomic_path

    if args.input_size is not None and args.input_size % 16:
        # TF SAME padding depends on each map's size parity; ONNX bakes the traced one. Multiples of 16 (what the
        # predictor pads to) keep every stride-2 input even, so the exported graph stays exact (docs/pretrained.md).
        raise UserError(f"--input-size {args.input_size}: must be a multiple of 16 for a TF-exact model")
    model, kind, kwargs = convert_tf(args.prefix, width_mult=args.width, output_stride=args.output_stride)
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
