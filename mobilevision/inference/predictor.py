"""`Predictor`: one object from a model, a checkpoint or an exported ONNX file to per-image results.

Stages (timed separately by `Predictor.timed` for the benchmark):
  preprocess   detection: one cv2.resize of the RGB uint8 image to the network input, with the interpolation the
               evaluation transform uses (area when shrinking, bilinear when enlarging); segmentation: the whole
               image padded at the bottom/right as evaluation pads it (`eval_transforms("pad")`), never squashed;
  forward      the network's raw outputs: torch (BatchNorm folded, channels-last) or onnxruntime (tuned session);
               segmentation at the evaluation output stride, with the paper's MF strategy when asked;
  postprocess  `DetectionPostprocess` (threshold first, bounded candidates, NMS, boxes scaled to the image) or
               scores -> mask, cropped from the padded canvas (or resized back in `input_size` mode).

Preprocessing follows the checkpoint's own evaluation protocol, so `predict` + `evaluate` scores what `validate`
scores on the same images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mobilevision.checkpoint import ModelMeta, load_checkpoint
from mobilevision.errors import UserError
from mobilevision.inference.inputs import ImageInput, load_input, split_inputs
from mobilevision.inference.postprocess import DetectionPostprocess, segmentation_mask
from mobilevision.inference.sources import DEFAULT_TIMEOUT, CaptureFactory, Source, open_source

ImageLike = ImageInput  # the old name, kept for callers
BACKENDS = ("torch", "onnxruntime")


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
        segmentation: `mask` [H, W] class indices at the image's own size (uint8, int64 beyond 256 classes).
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
        is_onnx = not isinstance(model_or_checkpoint, nn.Module) and Path(model_or_checkpoint).suffix.lower() == ".onnx"
        backend = backend or ("onnxruntime" if is_onnx else "torch")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if is_onnx and backend != "onnxruntime":
            raise ValueError(f"{model_or_checkpoint}: an .onnx file runs with backend='onnxruntime', got {backend!r}")
        self.backend = backend
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._session: Any = None
        self._model: nn.Module | None = None
        post: DetectionPostprocess | None = None

        if is_onnx:
            from mobilevision.export.onnx import make_session, read_metadata

            path = Path(model_or_checkpoint)
            if not path.is_file():
                raise UserError(f"{path}: file not found")
            meta, post = read_metadata(path)
            if meta.task == "detection" and input_size is not None and tuple(input_size) != tuple(meta.input_size):
                raise ValueError(f"{path} was exported at input size {meta.input_size}, got input_size={input_size}; "
                                 "re-export with `mobilevision export --input-size H W`")
            self._session = make_session(path, num_threads=num_threads, device=device)
            model = None
        else:
            if isinstance(model_or_checkpoint, nn.Module):
                model = model_or_checkpoint
                meta = meta or ModelMeta.for_model(model)
            else:
                model, meta = load_checkpoint(model_or_checkpoint)
            model = model.eval()
            from mobilevision.export.onnx import is_detector, postprocess_for

            if is_detector(model):
                post = postprocess_for(model)
        assert meta is not None
        self.meta = meta
        self.task = meta.task
        self.input_size: tuple[int, int] = tuple(input_size or meta.input_size)  # type: ignore[assignment]
        # Segmentation pads whole images (the evaluation protocol) unless the caller asked for a fixed input size.
        self.pad_multiple: int | None = None
        if self.task == "segmentation" and input_size is None:
            self.pad_multiple = int(meta.inference.get("pad_multiple")
                                    or meta.model_kwargs.get("output_stride") or 16)
        self.output_stride = output_stride or meta.inference.get("output_stride")
        self.multi_scale_flip = bool(meta.inference.get("multi_scale_flip", False)
                                     if multi_scale_flip is None else multi_scale_flip)
        from mobilevision.tasks.segmentation.inference import MF_SCALES

        self.mf_scales = tuple(float(x) for x in (mf_scales or meta.inference.get("mf_scales") or MF_SCALES))
        self.class_names = list(meta.class_names)
        num_classes = len(self.class_names)
        self._category_ids = np.asarray(meta.category_ids if meta.category_ids is not None else range(num_classes),
                                        dtype=np.int64)
        if self.task == "detection":
            assert post is not None
            self.postprocess = DetectionPostprocess(**{**post.__dict__, "score_threshold": float(score_threshold)})
        self.score_threshold = float(score_threshold)

        if model is not None and self.task == "segmentation" and self.output_stride \
                and int(self.output_stride) != model.output_stride:
            model.set_output_stride(int(self.output_stride))  # type: ignore[operator]
        elif self._session is not None and self.output_stride and output_stride is not None:
            raise ValueError("output_stride applies to the torch backend: an ONNX graph keeps the output stride it "
                             "was exported with")
        if self._session is not None and self.pad_multiple is not None:
            fixed = [d for d in self._session.get_inputs()[0].shape[2:] if isinstance(d, int)]
            if fixed:  # an export from before segmentation graphs had dynamic sizes
                raise ValueError("this ONNX segmenter has a fixed input size; give input_size=(H, W) to resize "
                                 "images to it, or re-export it with `mobilevision export` (dynamic sizes)")
        if model is not None:
            if backend == "onnxruntime":
                from mobilevision.export.onnx import export_bytes, make_session

                self._session = make_session(export_bytes(model, meta, input_size=self.input_size),
                                             num_threads=num_threads, device=device)
            else:
                if num_threads is not None:
                    torch.set_num_threads(int(num_threads))
                if optimize and self.device.type == "cpu":
                    from mobilevision.inference.optimize import optimize_for_cpu

                    model = optimize_for_cpu(model)
                self._model = model.to(self.device)

    # ----------------------------------------------------------------------------------------------------- stages
    def canvas(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The (h, w) the network sees for an image of `image_size`: the input size, or in segmentation's pad mode
        the image padded to at least the training size and to a multiple of `pad_multiple`."""
        if self.pad_multiple is None:
            return self.input_size
        m = self.pad_multiple
        h, w = (max(int(a), int(b)) for a, b in zip(image_size, self.input_size))
        return (-(-h // m) * m, -(-w // m) * m)

    def preprocess(self, images: Sequence[np.ndarray]) -> Any:
        """RGB uint8 (H, W, 3) images, all with the same `canvas`, -> the network's input batch (torch uint8
        [B, 3, h, w] channels-last view for torch, float32 numpy [B, 3, h, w] for onnxruntime)."""
        if self.pad_multiple is not None:
            from mobilevision.tasks.segmentation.data import eval_transforms

            # The very transform validation uses: padding can never drift from what the scores were measured on.
            pad = eval_transforms("pad", size=self.input_size, multiple=self.pad_multiple)
            prepared = [pad(image=img)["image"] for img in images]
        else:
            prepared = [eval_resize(img, self.input_size) for img in images]
        batch = prepared[0][None] if len(prepared) == 1 else np.stack(prepared)
        if self._session is not None:
            return batch.transpose(0, 3, 1, 2).astype(np.float32)
        # A permuted NHWC tensor *is* a channels-last NCHW tensor: no copy; Normalize converts to float in place.
        return torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)

    def _segment(self, batch: Tensor) -> Tensor:
        """Segmentation scores [B, C, h, w] of an input batch: logits, or MF-averaged probabilities."""
        if self._session is not None:
            def network(x: Tensor) -> Tensor:
                array = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
                return torch.from_numpy(np.asarray(self._session.run(None, {"images": array})[0]))
        else:
            assert self._model is not None
            network = self._model
        if self.multi_scale_flip:
            from mobilevision.tasks.segmentation.inference import multi_scale_flip_probs

            return multi_scale_flip_probs(network, batch, scales=self.mf_scales)
        return network(batch)

    def forward(self, batch: Any) -> list[Tensor]:
        """Raw outputs as CPU/device tensors: detection [cls_logits, bbox_regression, anchors], segmentation [scores]."""
        with torch.inference_mode():
            if self.task != "detection":
                return [self._segment(torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch)]
            if self._session is not None:
                outputs = self._session.run(None, {"images": batch})
                return [torch.from_numpy(np.asarray(o)) for o in outputs]
            assert self._model is not None
            raw, anchors = self._model.forward_raw(batch)
            return [raw["cls_logits"], raw["bbox_regression"], anchors]

    def postprocess_batch(self, outputs: list[Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        results = []
        with torch.inference_mode():
            for i, size in enumerate(image_sizes):
                if self.task == "detection":
                    det = self.postprocess(outputs[0][i], outputs[1][i], outputs[2], input_size=self.input_size,
                                           image_size=size)
                    labels = det["labels"].cpu().numpy()
                    results.append({
                        "boxes": det["boxes"].cpu().numpy().astype(np.float32, copy=False),
                        "scores": det["scores"].cpu().numpy().astype(np.float32, copy=False),
                        "labels": labels,
                        "category_ids": self._category_ids[labels] if len(self._category_ids) else labels,
                        "names": [self._name(int(label)) for label in labels],
                    })
                else:
                    scores = outputs[0][i]
                    if self.pad_multiple is not None:  # the image is the top-left corner of its canvas
                        scores = scores[:, : size[0], : size[1]]
                    results.append({"mask": segmentation_mask(scores, size).cpu().numpy()})
        return results

    def _name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class_{label}"

    # ----------------------------------------------------------------------------------------------------- calls
    def __call__(self, inputs: ImageInput | Sequence[ImageInput]) -> dict[str, Any] | list[dict[str, Any]]:
        """One image (path, URL, bytes, PIL image, numpy array, tensor) -> a dict; a list or a 4-D tensor batch ->
        a list. What each kind must look like: `mobilevision.inference.inputs` (ambiguous inputs are refused)."""
        items, single = split_inputs(inputs)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), self.batch_size):
            results += self.predict_batch([load_input(x) for x in items[start:start + self.batch_size]])
        return results[0] if single else results

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Already-decoded RGB uint8 images (any sizes) -> one result dict each.

        Images are batched by canvas: in segmentation's pad mode, images of different sizes run in separate passes,
        so an image's result never depends on what it was batched with.
        """
        if not images:
            return []
        sizes = [(int(img.shape[0]), int(img.shape[1])) for img in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, size in enumerate(sizes):
            groups.setdefault(self.canvas(size), []).append(index)
        results: list[dict[str, Any]] = [{} for _ in images]
        for indices in groups.values():
            outputs = self.forward(self.preprocess([images[i] for i in indices]))
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

    def stream(self, source: Source | str | int | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT,
               capture_factory: CaptureFactory | None = None) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
        """Yield (frame_index, frame RGB uint8, result) for each frame of a video file, camera index, URL (or any
        source `open_source` accepts), one frame at a time: memory stays flat however long the video.

        Raises:
            SourceTimeout: no frame arrived for `timeout` seconds.
        """
        opened = source if isinstance(source, Source) else open_source(source, timeout=timeout,
                                                                         capture_factory=capture_factory)
        try:
            for frame in opened:
                yield frame.index, frame.image, self.predict_batch([frame.image])[0]
        finally:
            if opened is not source:
                opened.close()


def eval_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 (H, W, 3) to `size` (h, w) as the detection evaluation transform does (albumentations'
    `Resize(area_for_downscale="image")`): area interpolation when either side shrinks, bilinear otherwise."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrinking = h < image.shape[0] or w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
