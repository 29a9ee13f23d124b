"""Regenerate tests/fixtures/tf/: TF reference checkpoints (random weights) and the reference's outputs.

Runs OUTSIDE the project's venv, in an environment with tensorflow-cpu and tf-slim (see the README beside this
file), and imports the reference implementation (tensorflow/models, `research/slim/nets/mobilenet`) from a path
given on the command line or in $TF_MODELS_RESEARCH; that code never enters this repository.

    /work/tfref/venv/bin/python tools/tf_reference/make_fixtures.py \
        --research /work/tfref/models/research --out tests/fixtures/tf

Per model, a directory `<out>/<name>/` with:

- `model.ckpt.index`, `model.ckpt.data-00000-of-00001.xz`: the TF checkpoint the reference saver wrote (tensor
  bundle V2; the data shard xz-compressed for the repository, `lzma` decompresses it), variable names exactly as the
  reference builds them (as the TF zoo checkpoints name them).
- `tf_load_checkpoint.npz.xz`: an xz-compressed .npz of every variable as
  `tf.train.load_checkpoint(...).get_tensor(name)` returns it (the
  ground truth for mobilevision's own checkpoint reader), keys are the TF names.
- `outputs.npz`: `input` (NHWC float32 in [-1, 1], the reference's input convention) and the reference's outputs
  on it, keyed by endpoint name with `/` kept (`layer_15/expansion_output`, `layer_19`, `Logits`, ...), all NHWC.
- `meta.json`: the build arguments, the seed, the package versions.

Weights: random, seeded, quantised so the shards compress (each conv/fc weight is `scale * k` with k an integer in
[-2, 2] and `scale` a power of two near He-init's std; BatchNorm gamma in {0.5, 0.75, ..., 1.5}, beta and moving
mean in multiples of 1/8 in [-0.5, 0.5], moving variance in {0.5, 0.75, ..., 2}). Quantisation changes nothing of
what the fixtures test (names, layouts, padding, epsilon, the arithmetic), only their size.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

SEED = 25


def _quantised(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A random value for variable `name` of `shape`, on a coarse grid (see the module docstring)."""
    base = name.rsplit("/", 1)[-1]
    if base == "gamma":
        return rng.integers(2, 7, size=shape).astype(np.float32) / 4
    if base in ("beta", "moving_mean"):
        return rng.integers(-4, 5, size=shape).astype(np.float32) / 8
    if base == "moving_variance":
        return rng.integers(2, 9, size=shape).astype(np.float32) / 4
    if base == "biases":
        return rng.integers(-4, 5, size=shape).astype(np.float32) / 16
    if base in ("weights", "depthwise_weights", "pointwise_weights", "kernel"):
        fan_in = int(np.prod(shape[:-1])) if base != "depthwise_weights" else int(np.prod(shape[:2]))
        scale = 2.0 ** np.round(np.log2(np.sqrt(2.0 / max(fan_in, 1)) / 1.4))
        if "ClassPredictor/" in name:  # SSD class logits near 0, so the sigmoid scores do not saturate and tie
            scale /= 8
        return (rng.integers(-2, 3, size=shape) * scale).astype(np.float32)
    if len(shape) == 0:
        return np.zeros(shape, dtype=np.float32)
    raise ValueError(f"no random rule for variable {name!r} of shape {shape}")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("tensorflow-cpu", "tensorflow", "tf-slim", "tf-keras", "keras", "numpy", "protobuf"):
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - absent packages are recorded as absent
            out[package] = "absent"
    return out


def _save(tf, sess, out_dir: Path, rng: np.random.Generator, *, dump: bool = True) -> None:
    """Fill every global variable with quantised random values, save the checkpoint, dump it back via TF (unless
    `dump` is False: the reader's ground truth is already in the other fixtures)."""
    variables = sorted(tf.global_variables(), key=lambda v: v.op.name)
    for variable in variables:
        shape = tuple(variable.shape.as_list())
        if variable.dtype.base_dtype == tf.int64:
            variable.load(np.int64(12345), sess)
        else:
            variable.load(_quantised(rng, variable.op.name, shape), sess)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = str(out_dir / "model.ckpt")
    tf.train.Saver(variables, write_version=tf.train.SaverDef.V2).save(sess, prefix, write_meta_graph=False)
    if dump:
        reader = tf.train.load_checkpoint(prefix)
        tensors = {name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())}
        buffer = io.BytesIO()
        np.savez(buffer, **tensors)
        with lzma.open(out_dir / "tf_load_checkpoint.npz.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as packed:
            packed.write(buffer.getvalue())
    data = out_dir / "model.ckpt.data-00000-of-00001"
    with lzma.open(str(data) + ".xz", "wb", preset=9 | lzma.PRESET_EXTREME) as packed:
        packed.write(data.read_bytes())
    data.unlink()
    (out_dir / "checkpoint").unlink(missing_ok=True)


def make_classifier(tf, out: Path, depth_multiplier: float, size: int) -> None:
    """The ImageNet classifier, 1001 classes (0 = background), as `mobilenet_v2_035` etc. build it."""
    from nets.mobilenet import mobilenet_v2

    rng = np.random.default_rng(SEED)
    tf.reset_default_graph()
    image = rng.uniform(-1, 1, size=(1, size, size, 3)).astype(np.float32)
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, (1, size, size, 3))
        finegrain = depth_multiplier < 1
        logits, endpoints = mobilenet_v2.mobilenet(
            inputs, num_classes=1001, depth_multiplier=depth_multiplier, finegrain_classification_mode=finegrain
        )
        keep = [
            "layer_1",
            "layer_2",
            "layer_3/depthwise_output",
            "layer_15/expansion_output",
            "layer_18",
            "layer_19",
            "global_pool",
            "Logits",
        ]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            name = f"mobilenet_v2_{int(round(depth_multiplier * 100)):03d}_classifier"
            _save(tf, sess, out / name, rng)
            values = sess.run({k: endpoints[k] for k in keep}, {inputs: image})
    np.savez_compressed(out / name / "outputs.npz", input=image, **values)
    meta = {
        "builder": "nets.mobilenet.mobilenet_v2.mobilenet",
        "num_classes": 1001,
        "depth_multiplier": depth_multiplier,
        "finegrain_classification_mode": finegrain,
        "input_size": size,
        "seed": SEED,
        "versions": _versions(),
        "shapes": {k: list(v.shape) for k, v in values.items()},
    }
    (out / name / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def make_deeplab(tf, out: Path, depth_multiplier: float, size: int, output_stride: int = 16) -> None:
    """Mobile DeepLabv3 as deeplab's model.py builds `mobilenet_v2` with no ASPP rates (image pooling + 1x1),
    output stride 16 (or 8), 21 classes; the reference's transcription lives outside the repo in
    `<research>/deeplab_min/model_min.py` (tensorflow/models research/deeplab model.py + feature_extractor.py).
    The weights do not depend on the output stride: an OS8 fixture keeps only its outputs and checks that its
    checkpoint is byte-identical to the OS16 one beside it."""
    from deeplab_min import model_min

    rng = np.random.default_rng(SEED + 1)
    image = rng.uniform(-1, 1, size=(1, size, size, 3)).astype(np.float32)
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, (1, size, size, 3))
        logits, upsampled, endpoints = model_min.get_logits(
            inputs, 21, crop_size=(size, size), output_stride=output_stride, depth_multiplier=depth_multiplier
        )
        fetch = {
            "layer_18": endpoints["layer_18"],
            "layer_15/expansion_output": endpoints["layer_15/expansion_output"],
            "concat_projection": endpoints["concat_projection"],
            "logits": logits,
            "logits_upsampled": upsampled,
        }
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            width = f"{int(round(depth_multiplier * 100)):03d}"
            name = f"deeplabv3_mnv2_{width}_os{output_stride}"
            _save(tf, sess, out / name, rng, dump=output_stride == 16)
            values = sess.run(fetch, {inputs: image})
    if output_stride != 16:
        reference = out / f"deeplabv3_mnv2_{width}_os16"
        for file in ("model.ckpt.index", "model.ckpt.data-00000-of-00001.xz"):
            if (out / name / file).read_bytes() != (reference / file).read_bytes():
                raise RuntimeError(f"{name}/{file} differs from {reference}/{file}; generate OS16 first")
            (out / name / file).unlink()
    np.savez_compressed(out / name / "outputs.npz", input=image, **values)
    meta = {
        "builder": "deeplab model.py _extract_features + _get_branch_logits (model_min transcription)",
        "num_classes": 21,
        "output_stride": output_stride,
        "checkpoint": "model.ckpt" if output_stride == 16 else f"../deeplabv3_mnv2_{width}_os16/model.ckpt",
        "atrous_rates": None,
        "add_image_level_feature": True,
        "aspp_with_batch_norm": True,
        "depth_multiplier": depth_multiplier,
        "input_size": size,
        "crop_size": [size, size],
        "seed": SEED + 1,
        "versions": _versions(),
        "shapes": {k: list(v.shape) for k, v in values.items()},
    }
    (out / name / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def make_ssdlite(tf, out: Path, depth_multiplier: float, size: int) -> None:
    """SSDLite MobileNetV2 as the zoo's `ssdlite_mobilenet_v2_coco` pipeline.config builds it (ssd_mobilenet_v2
    feature extractor with use_depthwise and min_depth 16, extra layers 512/256/256/128, the depthwise
    convolutional box predictor, 90 classes + background, multiple_grid anchors, faster_rcnn box coder 10/10/5/5,
    sigmoid scores, batch non-max suppression at score 1e-8 / IoU 0.6 / 100 per class / 100 in all), through the
    transcription in `<research>/ssd_min/ssd_min.py`, at a reduced width and input size."""
    from ssd_min import ssd_min

    rng = np.random.default_rng(SEED + 2)
    image = rng.integers(0, 256, size=(1, size, size, 3)).astype(np.uint8)
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, (1, size, size, 3))
        graph = ssd_min.ssdlite(inputs, num_classes=90, depth_multiplier=depth_multiplier, min_depth=16)
        fetch = {f"feature_map_{i}": t for i, t in enumerate(graph["feature_maps"])}
        fetch.update({k: graph[k] for k in graph if k not in ("feature_maps", "endpoints")})
        # feature_map_0 and _1 are the endpoints layer_15/expansion_output and layer_19 themselves.
        # The anchors of a non-square 160x224 input (TF scales the base anchor by the shorter side).
        fetch["anchors_160x224"] = ssd_min.generate_anchors(
            ssd_min.create_ssd_box_specs(), [(10, 14), (5, 7), (3, 4), (2, 2), (1, 1), (1, 1)], 160, 224
        )
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            name = f"ssdlite_mobilenet_v2_{int(round(depth_multiplier * 100)):03d}_coco"
            _save(tf, sess, out / name, rng, dump=False)
            values = sess.run(fetch, {inputs: image.astype(np.float32)})
    np.savez_compressed(out / name / "outputs.npz", input=image, **values)
    meta = {
        "builder": "object_detection ssd_mobilenet_v2 feature extractor + convolutional box predictor "
        "(ssd_min transcription)",
        "input": "NHWC uint8 (fed as float32 0..255; the meta-architecture preprocesses to [-1, 1])",
        "num_classes": 90,
        "depth_multiplier": depth_multiplier,
        "min_depth": 16,
        "use_depthwise": True,
        "anchors": "multiple_grid_anchor_generator num_layers 6 min_scale 0.2 max_scale 0.95 aspect_ratios "
        "1.0 2.0 0.5 3.0 0.3333 reduce_boxes_in_lowest_layer; ymin xmin ymax xmax normalised",
        "box_coder": "faster_rcnn_box_coder y_scale 10 x_scale 10 height_scale 5 width_scale 5; (ty, tx, th, tw)",
        "post_processing": {
            "score_converter": "SIGMOID",
            "score_threshold": 1e-8,
            "iou_threshold": 0.6,
            "max_detections_per_class": 100,
            "max_total_detections": 100,
            "clip_window": [0, 0, 1, 1],
        },
        "detection_classes": "0-based foreground index (COCO category id - 1)",
        "input_size": size,
        "seed": SEED + 2,
        "versions": _versions(),
        "shapes": {k: list(v.shape) for k, v in values.items()},
    }
    (out / name / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _alias_legacy_tf_layers() -> None:
    """tensorflow 2.21's tf.compat.v1 layers (which tf-slim's batch_norm uses) lazily import
    `tf_keras.legacy_tf_layers.*`, but tf-keras 2.21.0 ships them as `tf_keras.src.legacy_tf_layers.*` only
    (ModuleNotFoundError: No module named 'tf_keras.legacy_tf_layers'). Alias the modules; nothing else changes."""
    import importlib

    for sub in ("", ".base", ".core", ".convolutional", ".normalization", ".pooling", ".variable_scope_shim"):
        try:
            module = importlib.import_module("tf_keras.src.legacy_tf_layers" + sub)
        except ImportError:
            continue
        sys.modules.setdefault("tf_keras.legacy_tf_layers" + sub, module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--research",
        default=os.environ.get("TF_MODELS_RESEARCH"),
        help="tensorflow/models' research/ directory (or $TF_MODELS_RESEARCH)",
    )
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/tf"))
    parser.add_argument("--only", default="", help="comma-separated subset of: classifier, deeplab, ssdlite")
    args = parser.parse_args()
    if not args.research:
        parser.error("give --research or set TF_MODELS_RESEARCH")
    sys.path[:0] = [str(Path(args.research) / "slim"), str(Path(args.research))]
    _alias_legacy_tf_layers()
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    tf.random.set_random_seed(SEED)
    only = set(args.only.split(",")) if args.only else {"classifier", "deeplab", "ssdlite"}
    if "classifier" in only:
        shutil.rmtree(args.out / "mobilenet_v2_035_classifier", ignore_errors=True)
        make_classifier(tf, args.out, depth_multiplier=0.35, size=128)
    if "deeplab" in only:
        shutil.rmtree(args.out / "deeplabv3_mnv2_050_os16", ignore_errors=True)
        make_deeplab(tf, args.out, depth_multiplier=0.5, size=65)
        shutil.rmtree(args.out / "deeplabv3_mnv2_050_os8", ignore_errors=True)
        make_deeplab(tf, args.out, depth_multiplier=0.5, size=65, output_stride=8)
    if "ssdlite" in only:
        shutil.rmtree(args.out / "ssdlite_mobilenet_v2_035_coco", ignore_errors=True)
        make_ssdlite(tf, args.out, depth_multiplier=0.35, size=160)


if __name__ == "__main__":
    main()
