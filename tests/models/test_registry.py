from __future__ import annotations

import pytest

from mobilevision import MODELS, build_model
from mobilevision.profile import count_madds, count_params


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'yolo'.*ssdlite_mobilenet_v2.*deeplabv3_mobilenet_v2"):
        build_model("yolo")
    assert set(MODELS) == {
        "mobilenet_v2",
        "image_classifier_mobilenet_v2",
        "ssdlite_mobilenet_v2",
        "ssd_mobilenet_v2",
        "deeplabv3_mobilenet_v2",
        "ssdlite_deeplabv3_mobilenet_v2",
        "mobilenet_v3_large",
        "ssdlite_mobilenet_v3_large",
        "deeplabv3_mobilenet_v3_large",
        "ssdlite_deeplabv3_mobilenet_v3_large",
    }


# The paper's numbers (Tables 4, 6, 7) with the tolerances; MAdds counted with FlopCounterMode / 2.
@pytest.mark.parametrize(
    ("name", "kwargs", "size", "params", "params_tol", "madds", "madds_tol"),
    [
        ("mobilenet_v2", {"num_classes": 1000}, 224, 3.475e6, 0.022, 300e6, 0.03),
        ("ssdlite_mobilenet_v2", {"num_classes": 81}, 320, 4.3e6, 0.03, 0.8e9, 0.05),
        (
            "deeplabv3_mobilenet_v2",
            {"num_classes": 21, "output_stride": 16, "atrous_rates": ()},
            512,
            2.11e6,
            0.02,
            2.75e9,
            0.07,
        ),
        (
            "deeplabv3_mobilenet_v2",
            {"num_classes": 21, "output_stride": 16, "atrous_rates": (6, 12, 18)},
            512,
            4.52e6,
            0.02,
            5.8e9,
            0.15,
        ),
    ],
)
def test_paper_params_and_madds(name, kwargs, size, params, params_tol, madds, madds_tol) -> None:
    model = build_model(name, **kwargs)
    assert count_params(model) == pytest.approx(params, rel=params_tol)
    assert count_madds(model, size) == pytest.approx(madds, rel=madds_tol)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("ssdlite_mobilenet_v2", {"width_mult": 2.0}, "width_mult must be between 0.35 and 1.4.*2.0"),
        ("deeplabv3_mobilenet_v2", {"width_mult": 0.25}, "width_mult.*0.25"),
        ("mobilenet_v2", {"width_mult": "1.0"}, "width_mult.*'1.0'"),
        ("deeplabv3_mobilenet_v2", {"output_stride": 4}, r"output_stride must be one of \(8, 16, 32\), got 4"),
        ("ssd_mobilenet_v2", {"num_classes": 1}, "num_classes must be an integer >= 2.*got 1"),
        ("deeplabv3_mobilenet_v2", {"num_classes": 21.0}, "num_classes.*21.0"),
    ],
)
def test_builders_refuse_values_outside_their_range(name: str, kwargs: dict, match: str) -> None:
    from mobilevision.errors import UserError

    with pytest.raises(ValueError, match=match) as info:
        build_model(name, **kwargs)
    assert isinstance(info.value, UserError)  # one line from the CLI, not a traceback


@pytest.mark.parametrize("width", [0.35, 1.4])
def test_the_ends_of_the_width_range_build(width: float) -> None:
    build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=width)
