"""Converters from other frameworks' checkpoints. `tf_checkpoint` reads TF tensor bundles without tensorflow."""

from mobilevision.convert.tf_checkpoint import read_tf_checkpoint

__all__ = ["read_tf_checkpoint"]
