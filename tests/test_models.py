from __future__ import annotations

import pytest

from mobilevision import MODELS, build_model
from mobilevision.profile import count_madds, count_params


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'yolo'.*ssdlite_mobilenet_v2.*deeplabv3_mobilenet_v2"):
        build_model("yolo")
    assert set(MODELS) == {"mobilenet_v2", "ssdlite_mobilenet_v2", "ssd_mobilenet_v2", "deeplabv3_mobilenet_v2"}


# The paper's numbers (Tables 4, 6, 7) with the tolerances; MAdds counted with FlopCounterMode / 2.
@pytest.mark.parametrize(
    ("name", "kwargs", "size", "params", "params_tol", "madds", "madds_tol"),
    [
        ("mobilenet_v2", {"num_classes": 1000}, 224, 3.475e6, 0.022, 300e6, 0.03),
        ("ssdlite_mobilenet_v2", {"num_classes": 81}, 320, 4.3e6, 0.03, 0.8e9, 0.05),
        ("deeplabv3_mobilenet_v2", {"num_classes": 21, "output_stride": 16, "atrous_rates": ()}, 512,
         2.11e6, 0.02, 2.75e9, 0.07),
        ("deeplabv3_mobilenet_v2", {"num_classes": 21, "output_stride": 16, "atrous_rates": (6, 12, 18)}, 512,
         4.52e6, 0.02, 5.8e9, 0.15),
    ],
)
def test_paper_params_and_madds(name, kwargs, size, params, params_tol, madds, madds_tol) -> None:
    model = build_model(name, **kwargs)
    assert count_params(model) == pytest.approx(params, rel=params_tol)
    assert count_madds(model, size) == pytest.approx(madds, rel=madds_tol)
