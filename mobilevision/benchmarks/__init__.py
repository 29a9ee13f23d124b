"""Measurement: speed (and, for int8, accuracy) of our pipelines timed side by side against a reference in one
process, one module per benchmark, with the shared pieces in their own modules (`images`, `calibration`,
`quantized`, `timing`, `twin` (torchvision's reference pipelines), `common` (the parser and the end of `main`)).

`BENCHMARKS` is the list `mobilevision benchmark NAME` offers: name -> (module, what it measures). Each module has a
`main(argv) -> int`; nothing is imported until its benchmark runs.
"""

from __future__ import annotations

BENCHMARKS: dict[str, tuple[str, str]] = {
    "predictor": (
        "mobilevision.benchmarks.predictor",
        "end-to-end detection latency, ours against torchvision's SSD pipeline on the same network",
    ),
    "throughput": (
        "mobilevision.benchmarks.throughput",
        "detection images/s in batches and frames/s on a video, ours against torchvision",
    ),
    "data": ("mobilevision.benchmarks.data", "decode + SSD augmentation rate, ours against torchvision.transforms.v2"),
    "coco-eval": (
        "mobilevision.benchmarks.coco_eval",
        "COCO mAP evaluation time, our backend against pycocotools, same numbers",
    ),
    "segmentation": (
        "mobilevision.benchmarks.segmentation",
        "segmentation latency, ours against torchvision's DeepLabV3 pipeline on the same network",
    ),
    "multitask": (
        "mobilevision.benchmarks.multitask",
        "the joint model against a detector and a segmenter run one after the other",
    ),
    "masks": (
        "mobilevision.benchmarks.masks",
        "mask post-processing: Predictor end to end / forward for the segmenter and the joint model",
    ),
    "int8": ("mobilevision.benchmarks.int8", "a checkpoint's int8 ONNX model against fp32: accuracy and speed"),
    "onnx-ops": ("mobilevision.benchmarks.onnx_ops", "onnxruntime's profile of an exported model, by operator"),
}
