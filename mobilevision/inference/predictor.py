"""`Predictor`: one object from a model, a checkpoint or an exported ONNX file to per-image results.

The Predictor knows no task: the task table (`mobilevision.tasks.table`) gives, for the model's task, an adapter that
decides the input geometry, runs the network and turns raw outputs into results. Stages (timed separately by
`Predictor.timed` for the benchmarks):
  preprocess   the adapter's `prepare` of each RGB uint8 image to the network's input: detection resizes to the
               input size with the evaluation transform's interpolation; segmentation pads the whole image as
               evaluation does;
  forward      the raw outputs, named as the ONNX graph names them: torch (BatchNorm folded, channels-last, the
               exported surface module) or onnxruntime (tuned session); the adapter may run several passes (MF);
  postprocess  the adapter's `result`: detections (threshold, NMS, boxes in image pixels, dataset ids and names) or
               a mask at the image's own size.

Preprocessing follows the checkpoint's own evaluation protocol, so `predict` + `evaluate` scores what `validate`
scores on the same images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import ModelMeta, load_checkpoint
from mobilevision.errors import UserError
from mobilevision.inference.adapter import TaskAdapter, check_adapter
from mobilevision.inference.inputs import ImageInput, load_input, split_inputs
from mobilevision.inference.sources import DEFAULT_TIMEOUT, CaptureFactory, Source, open_source
from mobilevision.tasks.table import get_task, load

ImageLike = ImageInput  # the old name, kept for callers
BACKENDS = ("torch", "onnxruntime", "litert", "executorch")
# Exported files other than ONNX and the backend that runs each (`mobilevision.export.mobile.MobileSession`).
MOBILE_BACKENDS = {".tflite": "litert", ".pte": "executorch"}


class Predictor:
    """Run a detector or segmenter on images, folders, videos and streams.

    Args:
        model_or_checkpoint: an `nn.Module` from `build_model` (classes named "class_<i>"), a mobilevision checkpoint
            path (`.ckpt`/`.pt`, loaded with `weights_only=True`), or an exported `.onnx` file.
        backend: "torch" or "onnxruntime"; None picks onnxruntime for `.onnx` files and torch otherwise. A module or
            checkpoint with backend "onnxruntime" is exported in memory first.
        score_threshold: detections need this class probability.
        device: "cpu" (or "cuda" for torch / onnxruntime-gpu).
        input_size: (h, w) the network runs at; default the checkpoint's training size, 320x320 for a bare detector,
            512x512 for a bare segmenter. An ONNX graph has a fixed size: a different one is an error.
        num_threads: intra-op threads (torch: `torch.set_num_threads`, process-wide; onnxruntime: per session;
            None: the process's `torch.get_num_threads()` for both).
        meta: class names and ids for a bare module (default: `ModelMeta.for_model`).
        optimize: torch backend on CPU: fold BatchNorm and use channels-last (same outputs to ~1e-5).
        batch_size: images per forward pass when called on a list.
        output_stride: segmentation: run the backbone at this output stride (8, 16, 32; the paper's OS=8 rows).
            Default: the one the checkpoint was evaluated at. Torch backend only (an ONNX graph has its own).
        multi_scale_flip: segmentation: the paper's MF inference (softmax probabilities averaged over the scales
            `mf_scales` and their left-right flips). Default: as the checkpoint was evaluated.
        mf_scales: the MF scales (default: the checkpoint's, else 0.5 to 1.75 by 0.25).

    Segmentation input geometry: by default an image is padded (bottom/right, ImageNet mean) to at least the
    training crop size and to a multiple of the output stride, and the mask is cropped back: the evaluation protocol,
    whole images at their own scale. Giving `input_size` instead resizes every image to it (faster on large
    photos, but not what validation measures).

    Calling it on a path, URL, bytes, PIL image, RGB uint8 array (H, W, 3), tensor (C, H, W), or a list of those
    (see `mobilevision.inference.inputs` for the exact rules) returns per image a dict:
        detection: `boxes` float32 [N, 4] (x1 y1 x2 y2 in that image's pixels), `scores` float32 [N], `labels` int64
        [N] (contiguous 1..K), `category_ids` int64 [N] (the dataset's ids), `names` list[str];
        segmentation: `mask` [H, W] class indices at the image's own size (uint8, int64 beyond 256 classes);
        multitask (the joint model): detection's keys and `mask`, the segmentation head's classes
        (`meta.mask_class_names`), from one forward pass.
    A single input gives a dict, a list gives a list.
    """

    def __init__(
        self,
        model_or_checkpoint: nn.Module | str | os.PathLike[str],
        *,
        backend: str | None = None,
        score_threshold: float = 0.3,
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
        num_threads: int | None = None,
        meta: ModelMeta | None = None,
        optimize: bool = True,
        batch_size: int = 8,
        output_stride: int | None = None,
        multi_scale_flip: bool | None = None,
        mf_scales: Sequence[float] | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        suffix = "" if isinstance(model_or_checkpoint, nn.Module) else Path(model_or_checkpoint).suffix.lower()
        is_onnx = suffix == ".onnx"
        mobile = MOBILE_BACKENDS.get(suffix)
        backend = backend or ("onnxruntime" if is_onnx else mobile or "torch")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if is_onnx and backend != "onnxruntime":
            raise ValueError(f"{model_or_checkpoint}: an .onnx file runs with backend='onnxruntime', got {backend!r}")
        if (mobile or backend in MOBILE_BACKENDS.values()) and backend != mobile:
            raise ValueError(
                f"{model_or_checkpoint}: not for backend {backend!r} (a .tflite file runs with 'litert', a .pte "
                "file with 'executorch')"
            )
        self.backend = backend
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._session: Any = None
        self._network: nn.Module | None = None
        metadata: dict[str, Any] = {}
        model: nn.Module | None = None

        if is_onnx:
            from mobilevision.export.onnx import make_session, read_metadata

            path = Path(model_or_checkpoint)
            if not path.is_file():
                raise UserError(f"{path}: file not found")
            _refuse_nms_graph(path, [o.name for o in _onnx_outputs(path)])
            meta, metadata = read_metadata(path)
            self._session = make_session(path, num_threads=num_threads, device=device)
        elif mobile:
            from mobilevision.export.mobile import MobileSession

            path = Path(model_or_checkpoint)
            if not path.is_file():
                raise UserError(f"{path}: file not found")
            self._session = MobileSession(path, num_threads=num_threads)
            _refuse_nms_graph(path, self._session.output_names)
            meta, metadata = self._session.meta, self._session.metadata
            # A fixed-size graph: resize every image to it unless told otherwise (checked below like ONNX).
            input_size = input_size or meta.input_size
            is_onnx = True
        else:
            if isinstance(model_or_checkpoint, nn.Module):
                model = model_or_checkpoint
                meta = meta or ModelMeta.for_model(model)
            else:
                model, meta = load_checkpoint(model_or_checkpoint)
            model = model.eval()
        assert meta is not None
        self.meta = meta
        self.task = meta.task
        spec = get_task(meta.task)
        if (
            is_onnx
            and not spec.dynamic_spatial
            and input_size is not None
            and tuple(input_size) != tuple(meta.input_size)
        ):
            raise ValueError(
                f"{model_or_checkpoint} was exported at input size {meta.input_size}, got "
                f"input_size={input_size}; re-export it with `mobilevision export --input-size H W`"
            )
        if self._session is not None and spec.dynamic_spatial and input_size is None:
            fixed = [d for d in self._session.get_inputs()[0].shape[2:] if isinstance(d, int)]
            if fixed:  # an export from before segmentation graphs had dynamic sizes
                raise ValueError(
                    "this ONNX model has a fixed input size; give input_size=(H, W) to resize images "
                    "to it, or re-export it with `mobilevision export` (dynamic sizes)"
                )
        options = {
            "score_threshold": float(score_threshold),
            "input_size": input_size,
            "output_stride": output_stride,
            "multi_scale_flip": multi_scale_flip,
            "mf_scales": mf_scales,
            "metadata": metadata,
        }
        # The adapter may change the model (a segmenter's output stride) before it is optimised or exported.
        self.adapter: TaskAdapter = check_adapter(load(spec.inference)(model, meta, options))
        self.input_size: tuple[int, int] = tuple(input_size or meta.input_size)  # type: ignore[assignment]
        self.class_names = list(meta.class_names)
        self.score_threshold = float(score_threshold)
        self.output_names = spec.onnx_outputs

        if model is not None:
            if backend == "onnxruntime":
                from mobilevision.export.onnx import export_bytes, make_session

                self._session = make_session(
                    export_bytes(model, meta, input_size=self.input_size), num_threads=num_threads, device=device
                )
            else:
                if num_threads is not None:
                    torch.set_num_threads(int(num_threads))
                if optimize and self.device.type == "cpu":
                    from mobilevision.inference.optimize import optimize_for_cpu

                    model = optimize_for_cpu(model)
                # The exported surface: both backends compute the same named outputs.
                self._network = load(spec.export_module)(model.to(self.device)).eval()

    # ----------------------------------------------------------------------------------------------------- stages
    def preprocess(self, images: Sequence[np.ndarray]) -> Any:
        """RGB uint8 (H, W, 3) images that the adapter prepares to one shape (detection: always; segmentation: images
        of one padded size) -> the network's input batch (torch uint8 [B, 3, h, w] channels-last view for torch,
        float32 numpy [B, 3, h, w] for onnxruntime)."""
        return self._batch([self.adapter.prepare(img) for img in images])

    def _batch(self, prepared: Sequence[np.ndarray]) -> Any:
        batch = prepared[0][None] if len(prepared) == 1 else np.stack(prepared)
        if self._session is not None:
            return batch.transpose(0, 3, 1, 2).astype(np.float32)
        # A permuted NHWC tensor *is* a channels-last NCHW tensor: no copy; Normalize converts to float in place.
        return torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)

    def _run_network(self, batch: Tensor) -> list[Tensor]:
        """The raw outputs of one pass (`output_names` order) on a uint8 or float NCHW batch, either backend."""
        if self._session is not None:
            array = np.ascontiguousarray(batch.cpu().numpy(), dtype=np.float32)
            return [torch.from_numpy(np.asarray(o)) for o in self._session.run(None, {"images": array})]
        assert self._network is not None
        return list(self._network(batch))

    def forward(self, batch: Any) -> list[Tensor]:
        """Raw outputs as CPU/device tensors, in `output_names` order (the adapter may run several passes)."""
        with torch.inference_mode():
            tensor = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
            return self.adapter.run(self._run_network, tensor)

    def postprocess_batch(self, outputs: list[Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        with torch.inference_mode():
            return [self.adapter.result(outputs, i, tuple(size)) for i, size in enumerate(image_sizes)]

    # ----------------------------------------------------------------------------------------------------- calls
    def __call__(self, inputs: ImageInput | Sequence[ImageInput]) -> dict[str, Any] | list[dict[str, Any]]:
        """One image (path, URL, bytes, PIL image, numpy array, tensor) -> a dict; a list or a 4-D tensor batch ->
        a list. What each kind must look like: `mobilevision.inference.inputs` (ambiguous inputs are refused)."""
        items, single = split_inputs(inputs)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), self.batch_size):
            results += self.predict_batch([load_input(x) for x in items[start : start + self.batch_size]])
        return results[0] if single else results

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Already-decoded RGB uint8 images (any sizes) -> one result dict each.

        Images are batched by the shape the adapter prepares them to: in segmentation's pad mode, images of
        different sizes run in separate passes, so an image's result never depends on what it was batched with.
        """
        if not images:
            return []
        sizes = [(int(img.shape[0]), int(img.shape[1])) for img in images]
        prepared = [self.adapter.prepare(img) for img in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(prepared):
            groups.setdefault(array.shape, []).append(index)
        results: list[dict[str, Any]] = [{} for _ in images]
        for indices in groups.values():
            outputs = self.forward(self._batch([prepared[i] for i in indices]))
            for i, result in zip(indices, self.postprocess_batch(outputs, [sizes[i] for i in indices])):
                results[i] = result
        return results

    def timed(self, image: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        """One image with the time (seconds) of each stage: preprocess, forward, postprocess."""
        t0 = time.perf_counter()
        batch = self.preprocess([image])
        t1 = time.perf_counter()
        outputs = self.forward(batch)
        t2 = time.perf_counter()
        result = self.postprocess_batch(outputs, [image.shape[:2]])[0]
        t3 = time.perf_counter()
        return result, {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}

    def stream(
        self,
        source: Source | str | int | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        capture_factory: CaptureFactory | None = None,
    ) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
        """Yield (frame_index, frame RGB uint8, result) for each frame of a video file, camera index, URL (or any
        source `open_source` accepts), one frame at a time: memory stays flat however long the video.

        Raises:
            SourceTimeout: no frame arrived for `timeout` seconds.
        """
        opened = (
            source
            if isinstance(source, Source)
            else open_source(source, timeout=timeout, capture_factory=capture_factory)
        )
        try:
            for frame in opened:
                yield frame.index, frame.image, self.predict_batch([frame.image])[0]
        finally:
            if opened is not source:
                opened.close()


def _onnx_outputs(path: Path) -> list[Any]:
    """The graph outputs of an ONNX file, read without its weights (an undecodable file: empty, the loader below
    then says what is wrong with it)."""
    import onnx

    try:
        return list(onnx.load(str(path), load_external_data=False).graph.output)
    except Exception:  # noqa: BLE001 - any decoding failure is reported by read_metadata
        return []


def _refuse_nms_graph(path: Path, outputs: list[str]) -> None:
    """`export --nms` files end in final detections, not the raw outputs the Predictor post-processes."""
    from mobilevision.export.nms import NMS_OUTPUTS

    if list(outputs) == list(NMS_OUTPUTS):
        raw = str(path).replace(".nms.", ".")
        raise UserError(
            f"{path}: a graph with decoding and NMS inside (outputs {', '.join(NMS_OUTPUTS)}), made for apps; "
            f"predict, validate and benchmark run the raw export beside it ({raw})"
        )
