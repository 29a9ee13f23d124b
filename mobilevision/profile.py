"""`mobilevision profile`: parameters and multiply-adds of the paper's configurations beside the paper's numbers.

MAdds are counted with `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2), the convention under which
torchvision's `mobilenet_v2()` counts 300.8 M at 224x224, like the paper. Models are built and run on the `meta`
device: shapes propagate, nothing is computed, so even the multi-scale rows take a moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilevision.models import build_model

# The paper's multi-scale + flip test (MF, Table 7): these input scales, each also left-right flipped.
MF_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclass
class Row:
    table: str
    name: str
    input_size: int
    params_m: float
    madds_b: float
    paper_params_m: float | None = None
    paper_madds_b: float | None = None
    note: str = ""

    @property
    def params_diff(self) -> float | None:
        return None if self.paper_params_m is None else 100 * (self.params_m / self.paper_params_m - 1)

    @property
    def madds_diff(self) -> float | None:
        return None if self.paper_madds_b is None else 100 * (self.madds_b / self.paper_madds_b - 1)

    def _with(self, note: str) -> Row:
        self.note = note
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params_diff_pct"], d["madds_diff_pct"] = self.params_diff, self.madds_diff
        return d


def _build_meta(name: str, **kwargs: Any) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, **kwargs).eval()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_madds(model: nn.Module, input_size: int | tuple[int, int], batch: int = 1) -> int:
    """Multiply-adds of one forward pass (detectors: up to the raw head outputs, no decoding or NMS; the joint model:
    both heads' raw outputs, `forward_all`)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    device = next(model.parameters()).device
    x = torch.zeros(batch, 3, h, w, device=device)
    forward = getattr(model, "forward_all", None) or getattr(model, "forward_raw", model)
    was_training = model.training
    model.eval()  # batch statistics of 1x1 maps are undefined in training mode; the count is the same
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            forward(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_mf_madds(model: nn.Module, input_size: int, scales: Sequence[float] = MF_SCALES) -> int:
    """MAdds of multi-scale + left-right-flip inference: one pass per scale and flip."""
    return sum(2 * count_madds(model, max(1, round(input_size * s))) for s in scales)


def _row(
    table: str,
    name: str,
    size: int,
    paper: tuple[float | None, float | None],
    note: str = "",
    mf: bool = False,
    **kwargs: Any,
) -> Row:
    model = _build_meta(name, **kwargs)
    madds = count_mf_madds(model, size) if mf else count_madds(model, size)
    return Row(table, _label(name, kwargs, mf), size, count_params(model) / 1e6, madds / 1e9, *paper, note)


def _label(name: str, kwargs: dict[str, Any], mf: bool = False) -> str:
    parts = [f"{k}={v}" for k, v in kwargs.items() if k != "num_classes"]
    return name + (f" ({', '.join(parts)})" if parts else "") + (" MF" if mf else "")


def _head_row(name: str, size: int, paper: tuple[float, float], note: str) -> Row:
    # Table 5 compares prediction heads alone: the whole detector minus its backbone (same taps, same input).
    model = _build_meta(name, num_classes=81)
    backbone = model.backbone
    params = count_params(model) - count_params(backbone)
    madds = count_madds(model, size) - count_madds(_Wrap(backbone), size)
    return Row("5", f"{name} head only", size, params / 1e6, madds / 1e9, *paper, note)


class _Wrap(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Any:
        return self.backbone(x)


def paper_rows() -> list[Row]:
    """Every configuration of the paper's Tables 4 to 7 that this package builds."""
    return [
        _row("4", "mobilenet_v2", 224, (3.4, 0.300)),
        _row(
            "4",
            "mobilenet_v2",
            224,
            (6.9, 0.585),
            width_mult=1.4,
            note="TF-slim's own release lists 6.06M params for this network; the paper's 6.9M is not reproduced by "
            "any reference implementation",
        ),
        _head_row("ssd_mobilenet_v2", 320, (14.8, 1.25), "regular 3x3 convs in extra layers and predictors"),
        _head_row(
            "ssdlite_mobilenet_v2",
            320,
            (2.1, 0.35),
            "params match; the paper's 0.35B likely counts more than the head (e.g. layer 19 and the "
            "backbone part SSD adds), which the paper does not specify",
        ),
        _row("6", "ssdlite_mobilenet_v2", 320, (4.3, 0.8), num_classes=81),
        _row(
            "7", "deeplabv3_mobilenet_v2", 512, (4.52, 5.8), num_classes=21, output_stride=16, atrous_rates=(6, 12, 18)
        ),
        _row(
            "7",
            "deeplabv3_mobilenet_v2",
            513,
            (4.52, 5.8),
            num_classes=21,
            output_stride=16,
            atrous_rates=(6, 12, 18),
            note="513x513: the TF reference's crop size",
        ),
        _row(
            "7",
            "deeplabv3_mobilenet_v2",
            513,
            (4.52, 387.0),
            num_classes=21,
            output_stride=8,
            atrous_rates=(12, 24, 36),
            mf=True,
        ),
        _row("7", "deeplabv3_mobilenet_v2", 512, (2.11, 2.75), num_classes=21, output_stride=16, atrous_rates=()),
        _row(
            "7",
            "deeplabv3_mobilenet_v2",
            513,
            (2.11, 2.75),
            num_classes=21,
            output_stride=16,
            atrous_rates=(),
            note="513x513: the TF reference's crop size; this is where the paper's 2.75B comes from",
        ),
        _row(
            "7", "deeplabv3_mobilenet_v2", 513, (2.11, 152.6), num_classes=21, output_stride=8, atrous_rates=(), mf=True
        ),
    ]


def joint_rows(
    input_size: int = 320, *, num_classes: int = 81, mask_classes: int = 21, width_mult: float = 1.0
) -> list[Row]:
    """The joint model (SSDLite + Mobile DeepLabv3 on one backbone pass) beside the two separate models it replaces,
    at the same width and input (the paper's settings by default: 81 detector classes, 21 mask classes, 320), and
    the two together. No paper numbers: the paper has no joint model."""
    width = {} if width_mult == 1.0 else {"width_mult": width_mult}
    joint = _row(
        "joint",
        "ssdlite_deeplabv3_mobilenet_v2",
        input_size,
        (None, None),
        num_classes=num_classes,
        seg_num_classes=mask_classes,
        **width,
    )
    joint.name = _label("ssdlite_deeplabv3_mobilenet_v2", width) + f" ({num_classes} + {mask_classes} classes)"
    detector = _row("joint", "ssdlite_mobilenet_v2", input_size, (None, None), num_classes=num_classes, **width)
    segmenter = _row(
        "joint",
        "deeplabv3_mobilenet_v2",
        input_size,
        (None, None),
        num_classes=mask_classes,
        output_stride=16,
        atrous_rates=(),
        **width,
    )
    both = Row(
        "joint",
        "detector + segmenter",
        input_size,
        detector.params_m + segmenter.params_m,
        detector.madds_b + segmenter.madds_b,
        note=f"the joint model has {joint.params_m / (detector.params_m + segmenter.params_m):.2f}x their "
        f"parameters and {joint.madds_b / (detector.madds_b + segmenter.madds_b):.2f}x their MAdds",
    )
    return [joint, detector, segmenter, both]


class _TorchvisionRaw(nn.Module):
    """A torchvision SSD or segmentation model up to its raw outputs (no resize transform, decoding or NMS), the same
    surface `count_madds` counts of ours."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        if hasattr(self.model, "anchor_generator"):  # torchvision's SSD: backbone maps -> head
            return self.model.head(list(self.model.backbone(x).values()))
        return self.model(x)


def _torchvision_row(table: str, name: str, size: int, paper: tuple[float | None, float | None], **kwargs: Any) -> Row:
    import torchvision.models.detection
    import torchvision.models.segmentation

    module = torchvision.models.detection if name.startswith("ssd") else torchvision.models.segmentation
    with torch.device("meta"):
        model = getattr(module, name)(weights=None, weights_backbone=None, **kwargs).eval()
    raw = _TorchvisionRaw(model)
    return Row(table, f"torchvision {name}", size, count_params(model) / 1e6, count_madds(raw, size) / 1e9, *paper)


def v3_rows() -> list[Row]:
    """MobileNetV3-Large models beside torchvision's, counted in the same run the same way (raw outputs). The
    "paper" columns of torchvision's SSDLite are its published figures (3.44M params, 0.58 GFLOPS at 320)."""
    ssd_note = "torchvision builds its SSDLite with the reduced tail when no ImageNet backbone is loaded, as here"
    return [
        _row(
            "v3",
            "ssdlite_mobilenet_v3_large",
            320,
            (3.44, 0.58),
            num_classes=91,
            backbone_kwargs={"reduced_tail": True},
        ),
        _row("v3", "ssdlite_mobilenet_v3_large", 320, (3.44, 0.58), num_classes=91),
        _torchvision_row("v3", "ssdlite320_mobilenet_v3_large", 320, (3.44, 0.58), num_classes=91)._with(ssd_note),
        _row("v3", "deeplabv3_mobilenet_v3_large", 520, (None, None), num_classes=21, atrous_rates=(12, 24, 36)),
        _row("v3", "deeplabv3_mobilenet_v3_large", 520, (None, None), num_classes=21),
        _torchvision_row("v3", "deeplabv3_mobilenet_v3_large", 520, (None, None), num_classes=21),
        _torchvision_row("v3", "lraspp_mobilenet_v3_large", 520, (None, None), num_classes=21),
    ]


def format_table(rows: Sequence[Row]) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    header = ("table", "model", "input", "params M", "paper", "diff %", "MAdds B", "paper", "diff %")
    body = [
        (
            r.table,
            r.name,
            str(r.input_size),
            f"{r.params_m:.3f}",
            num(r.paper_params_m, ".2f"),
            num(r.params_diff, "+.1f"),
            f"{r.madds_b:.3f}",
            num(r.paper_madds_b, ".3f"),
            num(r.madds_diff, "+.1f"),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [header, *body]]
    notes = [f"  table {r.table} {r.name} @{r.input_size}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def model_rows(name: str, input_size: int | None = None, *, mf: bool = False, **kwargs: Any) -> list[Row]:
    """One configuration of `MODELS` profiled at `input_size` (default: 224 for the classifier, 512 for the
    segmenter, 320 otherwise); a TypeError if it does not take one of `kwargs`."""
    default_size = {"mobilenet_v2": 224, "deeplabv3_mobilenet_v2": 512}.get(name, 320)
    return [_row("-", name, input_size or default_size, (None, None), mf=mf, **kwargs)]
