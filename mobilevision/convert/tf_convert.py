"""`convert_tf(prefix)`: a TF reference checkpoint (slim MobileNetV2 classifier or DeepLab) as a mobilevision model.

The architecture is read off the variable names, the width off the channel counts; the model is built with
`tf_exact=True` (TF's padding, epsilons, input scaling and upsampling) so it computes what the reference computes
(parity: tests/convert/test_tf_parity.py, tests/convert/test_tf_ssd_parity.py). The SSDLite detector's mapping
and options live in `mobilevision.convert.tf_ssd`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mobilevision.convert.tf_checkpoint import read_tf_checkpoint
from mobilevision.convert.tf_mobilenet import (
    classifier_sources,
    deeplab_sources,
    infer_width,
    load_sources,
)
from mobilevision.errors import WeightsError

VOC_CLASSES: list[str] = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
    "pottedplant sheep sofa train tvmonitor"
).split()


def architecture(variables: dict[str, np.ndarray], path: Path) -> str:
    """ "classifier", "deeplab" or "ssdlite", from the checkpoint's variable names."""
    names = set(variables)
    if "MobilenetV2/Logits/Conv2d_1c_1x1/weights" in names:
        return "classifier"
    if "logits/semantic/weights" in names and "aspp0/weights" in names:
        return "deeplab"
    if any(n.startswith("FeatureExtractor/MobilenetV2/") for n in names):
        return "ssdlite"
    raise WeightsError(
        f"{path}: not a MobileNetV2 classifier, DeepLab or SSDLite checkpoint of the TF reference "
        f"(first variables: {sorted(names)[:3]})"
    )


def convert_tf(
    prefix: str | Path, *, width_mult: float | None = None, output_stride: int = 16, coco80: bool = False
) -> tuple[nn.Module, str, dict[str, Any]]:
    """(model in eval mode, architecture, builder kwargs) of the checkpoint at `prefix` (`model.ckpt`). `coco80`:
    a COCO detector keeps background + COCO 2017's 80 outputs (see `mobilevision.convert.tf_ssd`).

    Raises:
        WeightsError: unreadable or truncated files, another architecture, a width that does not match, unmapped or
            missing variables, an unexpected number of classes.
    """
    path = Path(prefix)
    variables = read_tf_checkpoint(path)
    kind = architecture(variables, path)
    if kind == "ssdlite":
        from mobilevision.convert.tf_ssd import COCO_80_IDS, detector_kwargs, ssd_sources
        from mobilevision.models.detector import ssdlite_mobilenet_v2

        kwargs = detector_kwargs(variables, path, width_mult, coco80=coco80)
        model = ssdlite_mobilenet_v2(**kwargs)
        keep = [0, *COCO_80_IDS] if coco80 else None
        load_sources(model, variables, ssd_sources(kwargs["extra_depths"], keep), path)
        return model.eval(), kind, kwargs
    width = infer_width(variables, path)
    if width_mult is not None and abs(width_mult - width) > 1e-9:
        raise WeightsError(f"{path}: --width {width_mult} given, but the checkpoint's channels are width {width}")
    if kind == "classifier":
        from mobilevision.models.classifier import mobilenet_v2

        classes = int(variables["MobilenetV2/Logits/Conv2d_1c_1x1/biases"].shape[0])
        if classes != 1001:
            raise WeightsError(f"{path}: the classifier has {classes} outputs, expected ImageNet's 1001")
        kwargs: dict[str, Any] = {"num_classes": 1000, "width_mult": width, "tf_exact": True}
        model = mobilenet_v2(**kwargs)
        load_sources(model, variables, classifier_sources(), path)
        return model.eval(), kind, kwargs
    from mobilevision.models.segmenter import deeplabv3_mobilenet_v2

    classes = int(variables["logits/semantic/biases"].shape[0])
    if classes < 2:
        raise WeightsError(f"{path}: logits/semantic has {classes} outputs, expected 2 or more (VOC: 21)")
    channels = int(variables["aspp0/weights"].shape[-1])
    kwargs = {
        "num_classes": classes,
        "width_mult": width,
        "output_stride": 16,
        "atrous_rates": [],
        "head_channels": channels,
        "tf_exact": True,
    }
    model = deeplabv3_mobilenet_v2(**kwargs)
    load_sources(model, variables, deeplab_sources(len(model.backbone.features), channels), path)
    if output_stride != 16:
        model.set_output_stride(output_stride)
        kwargs["output_stride"] = output_stride
    return model.eval(), kind, kwargs
