"""Image classification (the ImageNet classifier, e.g. converted from the TF reference): inference and export."""
