"""The ``shapes`` dataset: grey images of four shapes, generated (no download, seeded).

Classes: 0 square outline, 1 filled disc, 2 plus sign, 3 filled triangle; each at a random
position and size, on a noisy background. Mirroring and small rotations keep the class,
which is what the CNN example's augmentation relies on.
"""

from __future__ import annotations

import numpy as np

from epochal.data.datasets import ArrayDataset

__all__ = ["CLASSES", "load_shapes"]

CLASSES = ("square", "disc", "plus", "triangle")
#: The most pixels generated in all (2 GiB of float32): bigger is a typo, not a data set.
_MAX_PIXELS = 2**29


def _draw(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = rng.uniform(0.22, 0.38) * size
    cy, cx = rng.uniform(radius + 1, size - radius - 1, size=2)
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    if kind == 0:  # square outline, two pixels thick
        outer = np.maximum(dy, dx) <= radius
        inner = np.maximum(dy, dx) <= radius - 2
        mask = outer & ~inner
    elif kind == 1:  # filled disc
        mask = dy**2 + dx**2 <= radius**2
    elif kind == 2:  # plus sign
        arm = max(1.0, radius / 3)
        mask = ((dy <= arm) & (dx <= radius)) | ((dx <= arm) & (dy <= radius))
    else:  # filled triangle, apex up
        top = cy - radius
        mask = (yy >= top) & (yy <= cy + radius) & (dx <= (yy - top) / 2)
    return mask.astype(np.float32)


def load_shapes(n_samples: int = 1200, size: int = 16, noise: float = 0.15, seed: int = 0
                ) -> ArrayDataset:  # fmt: skip
    """``data``: float32 ``(n, 1, size, size)`` in about [0, 1]; ``label``: int64 class index.

    The same ``seed`` gives the same images; classes are balanced.
    """
    if n_samples < len(CLASSES):
        raise ValueError(f"n_samples must be at least {len(CLASSES)}, got {n_samples}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if n_samples * size * size > _MAX_PIXELS:  # generated in memory, one image at a time
        raise ValueError(
            f"n_samples = {n_samples} images of {size}x{size} pixels would take "
            f"{n_samples * size * size * 4 / 2**30:.3g} GiB; at most {_MAX_PIXELS // 2**20} "
            "million pixels in all (for example n_samples <= "
            f"{_MAX_PIXELS // (size * size)} at size {size})"
        )
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    images = np.stack([_draw(int(label), size, rng) for label in labels])
    images = images * rng.uniform(0.6, 1.0, size=(n_samples, 1, 1)).astype(np.float32)
    images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    return ArrayDataset(data=images[:, None].astype(np.float32), label=labels)
