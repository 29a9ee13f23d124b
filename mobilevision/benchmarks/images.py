"""The images the benchmarks use: photo-like generated scenes (clutter and shapes, so detections exist) and a busy
one (a crowded street's worth of objects)."""

from __future__ import annotations

import numpy as np

IMAGE_SHAPE = (480, 640)


def photo_like_images(
    count: int,
    size: tuple[int, int],
    *,
    seed: int = 0,
    objects: tuple[int, int] = (1, 9),
    max_object: float | None = None,
) -> list[np.ndarray]:
    """`count` RGB uint8 (H, W, 3) images from the shapes generator: textured noisy backgrounds with clutter and
    `objects` (low, high exclusive) filled shapes each, as photo-like as a generator without data gets."""
    from mobilevision.data.shapes_render import render_image

    rng = np.random.default_rng(seed)
    h, w = size
    return [
        render_image(
            h,
            w,
            rng,
            num_objects=int(rng.integers(*objects)),
            min_object_size=12.0,
            max_object_size=max_object or 0.6 * min(h, w),
        )[0]
        for _ in range(count)
    ]


def busy_image(size: tuple[int, int] = IMAGE_SHAPE, *, seed: int = 1) -> np.ndarray:
    """RGB uint8 (H, W, 3): 40 shapes of 16 px to 40% of the short side on clutter, a crowded street's worth."""
    return photo_like_images(1, size, seed=seed, objects=(40, 41), max_object=0.4 * min(size))[0]
