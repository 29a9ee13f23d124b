"""`export --format tflite | executorch` files, their metadata, and `Predictor` on them (`mobilevision.export.mobile`).

The runtime tests skip when the runtime is not installed (CI installs `.[test]` only): `pip install
'mobilevision[executorch]'` / `'mobilevision[tflite]'`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilevision.cli import main as cli_main
from mobilevision.errors import WeightsError
from mobilevision.export.mobile import MobileSession, export_mobile, metadata_path, read_mobile_metadata
from mobilevision.inference.predictor import Predictor
from tests.inference.models_for_tests import detector_meta, random_image, small_detector

RUNTIMES = {"executorch": ("executorch.runtime",), "tflite": ("litert_torch", "ai_edge_litert.interpreter")}


def test_metadata_missing_is_one_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "model.pte"
    model.write_bytes(b"not a program")
    with pytest.raises(WeightsError, match="model.pte.json: missing"):
        MobileSession(model)
    metadata_path(model).write_text(json.dumps({"other": 1}))
    with pytest.raises(WeightsError, match="not mobilevision metadata"):
        read_mobile_metadata(model)


def test_predictor_refuses_a_backend_that_does_not_run_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a .tflite file runs with 'litert'"):
        Predictor(tmp_path / "model.tflite", backend="onnxruntime")


def test_cli_refuses_an_output_of_another_format(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "--model", "ssdlite_mobilenet_v2", "--format", "executorch", "--output", "x.onnx"])
    assert exit_info.value.code == 2
    assert "--output must end in .pte with --format executorch" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(RUNTIMES))
def test_predictor_runs_the_file_as_torch_does(fmt: str, tmp_path: Path) -> None:
    """The same detections from the exported file as from the torch model, through the same results API."""
    for module in RUNTIMES[fmt]:
        pytest.importorskip(module)
    size = (160, 160)
    model, meta = small_detector(), detector_meta(input_size=size)
    path = export_mobile(
        model, tmp_path / f"model{'.pte' if fmt == 'executorch' else '.tflite'}", meta, fmt=fmt, input_size=size
    )
    image = random_image(120, 160, seed=3)
    reference = Predictor(model, meta=meta, input_size=size, num_threads=1)(image)
    exported = Predictor(path, num_threads=1)
    assert exported.backend == ("executorch" if fmt == "executorch" else "litert")
    result = exported([image, image])[0]  # a batch of two runs one image at a time
    assert result["names"] == reference["names"] and len(result["boxes"]) > 0
    assert torch.equal(torch.as_tensor(result["labels"]), torch.as_tensor(reference["labels"]))
    np.testing.assert_allclose(np.asarray(result["boxes"]), np.asarray(reference["boxes"]), atol=0.05)
    np.testing.assert_allclose(np.asarray(result["scores"]), np.asarray(reference["scores"]), atol=1e-3)


def test_tflite_runner_dequantizes_int8_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 .tflite can return its outputs quantized: the runner gives (q - zero_point) * scale, floats as-is."""
    import sys
    import types

    import numpy as np

    from mobilevision.export.tflite import TfliteRunner

    outputs = {
        1: np.array([[-6, 10]], dtype=np.int8),
        2: np.array([[0.5, 1.5]], dtype=np.float32),
        3: np.array([[3, 7]], dtype=np.int32),  # plain integers (an NMS graph's labels): scale 0, not quantized
    }

    class FakeInterpreter:
        def __init__(self, **_: object) -> None:
            pass

        def allocate_tensors(self) -> None:
            pass

        def get_input_details(self) -> list[dict]:
            return [{"index": 0}]

        def get_output_details(self) -> list[dict]:
            return [
                {"index": 2, "name": "output_1", "dtype": np.float32, "quantization": (0.0, 0)},
                {"index": 1, "name": "output_0", "dtype": np.int8, "quantization": (0.5, -6)},
                {"index": 3, "name": "output_2", "dtype": np.int32, "quantization": (0.0, 0)},
            ]

        def set_tensor(self, index: int, value: np.ndarray) -> None:
            pass

        def invoke(self) -> None:
            pass

        def get_tensor(self, index: int) -> np.ndarray:
            return outputs[index]

    module = types.ModuleType("ai_edge_litert.interpreter")
    module.Interpreter = FakeInterpreter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert", types.ModuleType("ai_edge_litert"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", module)
    first, second, third = TfliteRunner(b"", num_threads=1)(torch.zeros(1, 3, 4, 4))
    assert first.dtype == torch.float32 and first.tolist() == [[0.0, 8.0]]
    assert second.tolist() == [[0.5, 1.5]]
    assert third.dtype == torch.int32 and third.tolist() == [[3, 7]]
