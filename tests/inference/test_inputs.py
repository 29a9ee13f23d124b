"""Every kind of input a user passes reaches the network as the same RGB uint8 image; ambiguous ones are refused."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevision.errors import UserError
from mobilevision.inference.inputs import InputError, load_input, split_inputs
from mobilevision.inference.predictor import Predictor
from tests.inference.models_for_tests import small_detector


def _rgb(h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local http.server on 127.0.0.1 serving a PNG, a text file and a large file."""
    root = tmp_path_factory.mktemp("www")
    (root / "image.png").write_bytes(_png(_rgb()))
    (root / "notes.txt").write_text("hello")
    (root / "big.bin").write_bytes(b"\0" * 4096)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_kind_of_the_same_image_gives_the_same_array(tmp_path: Path, server: str) -> None:
    image = _rgb()
    (tmp_path / "a.png").write_bytes(_png(image))
    chw = torch.from_numpy(image).permute(2, 0, 1)
    kinds = {
        "path": tmp_path / "a.png",
        "str": str(tmp_path / "a.png"),
        "url": f"{server}/image.png",
        "bytes": _png(image),
        "bytearray": bytearray(_png(image)),
        "pil": Image.fromarray(image),
        "numpy": image,
        "chw uint8": chw,
        "hwc uint8": chw.permute(1, 2, 0),
        "chw float 0..1": chw.float() / 255,
        "chw float 0..255": chw.float(),
        "chw int64": chw.long(),
        "rgba pil": Image.fromarray(image).convert("RGBA"),
    }
    for name, item in kinds.items():
        assert np.array_equal(load_input(item), image), name
    # The URL image decodes to the served PNG (same generator seed).
    assert np.array_equal(load_input(f"{server}/image.png"), image)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_pil_images_of_any_mode_become_rgb(mode: str) -> None:
    out = load_input(
        Image.fromarray(_rgb()).convert(mode)
        if mode not in ("I;16", "I", "F")
        else Image.fromarray(_rgb()[..., 0]).convert(mode)
    )
    assert out.shape == (40, 56, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.zeros(3, 3, 3, dtype=torch.uint8), "ambiguous"),
        (torch.zeros(3, 50, 4, dtype=torch.uint8), "ambiguous"),
        (torch.zeros(5, 50, 60), "no channel axis"),
        (torch.zeros(2, 3, 4, 5, 6), "expected"),
        (torch.full((3, 20, 20), -0.5), "normalisation"),
        (torch.full((3, 20, 20), 300.0), r"\[0, 255\]"),
        (torch.full((3, 20, 20), float("nan")), "NaN"),
        (torch.full((3, 20, 20), 1000, dtype=torch.int32), "8 bits"),
        (torch.zeros(3, 20, 20, dtype=torch.bool), "bool"),
        (np.zeros((3, 50, 60), np.uint8), "channel-first"),
        (np.zeros((10, 10, 3), np.float32), "float32"),
        ({"image": 1}, "dict"),
        (42, "int"),
        ("ftp://example.com/a.jpg", "only http"),
        (b"not an image", "not a readable image"),
    ],
)
def test_ambiguous_or_wrong_inputs_are_refused(bad: object, match: str) -> None:
    with pytest.raises((InputError, UserError), match=match):
        split_inputs(bad)
        load_input(bad)


def test_url_errors_are_user_errors(server: str) -> None:
    with pytest.raises(UserError, match="HTTP 404"):
        load_input(f"{server}/missing.png")
    with pytest.raises(UserError, match="not a readable image"):
        load_input(f"{server}/notes.txt")
    with pytest.raises(UserError, match="above the limit"):
        load_input(f"{server}/big.bin", max_url_bytes=1000)


def test_predictor_returns_one_result_per_image_whatever_the_container() -> None:
    predictor = Predictor(small_detector(force=False), input_size=(96, 96))
    image = _rgb(96, 96)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    one = predictor(Image.fromarray(image))
    assert isinstance(one, dict)
    # The report: a (3, H, W) tensor gave three results (one per channel). Now one, equal to the array's.
    from_tensor = predictor(chw)
    assert isinstance(from_tensor, dict) and np.allclose(from_tensor["scores"], one["scores"])
    batch = predictor(torch.stack([chw, chw]))
    assert isinstance(batch, list) and len(batch) == 2
    assert len(predictor([chw, image, Image.fromarray(image)])) == 3
    with pytest.raises(InputError, match="inside a list"):
        predictor([torch.stack([chw, chw])])
