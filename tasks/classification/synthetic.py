"""Synthetic image-classification data sets: small grayscale images, one object each.

- :func:`make_glyphs` (the classification task's default): each class is a fixed random 5x5
  binary glyph, drawn at a random position and intensity on a textured, noisy background.
  Telling 16 such glyphs apart takes capacity: small-CNN architectures differ by three times
  the seed-to-seed noise (see ``benchmarks/RESULTS.md``, "Supernet fidelity").
- :func:`make_shapes`: one geometric shape (the class) of random size, position and intensity,
  with up to three small distracting blobs.

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed fixes the data set
exactly; classes are balanced (counts differ by at most one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["MAX_GLYPHS", "SHAPES", "glyph_templates", "make_glyphs", "make_shapes"]

Mask = Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]


def _disk(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return dx**2 + dy**2 <= r**2


def _square(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r


def _triangle(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    # apex at the top, base at the bottom: the half-width grows linearly downwards
    return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) * 0.55)


def _cross(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return (((np.abs(dx) <= t) & (np.abs(dy) <= r))
            | ((np.abs(dy) <= t) & (np.abs(dx) <= r)))


def _ring(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    d2 = dx**2 + dy**2
    return (d2 <= r**2) & (d2 >= (r - max(1.2, 0.4 * r)) ** 2)


def _hbar(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return (np.abs(dy) <= t) & (np.abs(dx) <= r)


def _vbar(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return (np.abs(dx) <= t) & (np.abs(dy) <= r)


def _diamond(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return np.abs(dx) + np.abs(dy) <= r


def _x(dx: np.ndarray, dy: np.ndarray, r: float, t: float) -> np.ndarray:
    return (np.abs(np.abs(dx) - np.abs(dy)) <= t) & (np.maximum(np.abs(dx), np.abs(dy)) <= r)


#: class index -> (name, mask function); ``num_classes = k`` uses the first k shapes
SHAPES: tuple[tuple[str, Mask], ...] = (
    ("disk", _disk), ("square", _square), ("triangle", _triangle), ("cross", _cross),
    ("ring", _ring), ("hbar", _hbar), ("vbar", _vbar), ("diamond", _diamond), ("x", _x),
)


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
             size: int) -> np.ndarray:
    """A smooth random background in [0, 1]: a few low-frequency sinusoids."""
    bg = np.zeros_like(xx)
    for _ in range(3):
        fx, fy = rng.uniform(-2.5, 2.5, size=2) * 2 * np.pi / size
        bg += rng.uniform(0.3, 1.0) * np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    return (bg - bg.min()) / max(float(bg.max() - bg.min()), 1e-6)


def make_shapes(n_samples: int = 3000, image_size: int = 16, num_classes: int = 6,
                noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: ``float32`` images of shape ``(n, 1, size, size)`` in [0, 1] and
    ``int64`` labels in ``[0, num_classes)``; the label is the index of the shape in
    :data:`SHAPES`. ``noise`` is the standard deviation of the per-pixel Gaussian noise."""
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in 2..{len(SHAPES)}, got {num_classes}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if n_samples < num_classes:
        raise ValueError(f"n_samples ({n_samples}) must be >= num_classes ({num_classes})")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_samples) % num_classes).astype(np.int64)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    images = np.empty((n_samples, 1, image_size, image_size), dtype=np.float32)
    s = float(image_size)
    for i, label in enumerate(labels):
        r = rng.uniform(0.22 * s, 0.4 * s)
        cx = rng.uniform(r - 0.5, s - 0.5 - r)
        cy = rng.uniform(r - 0.5, s - 0.5 - r)
        t = max(0.8, 0.2 * r)  # stroke half-thickness of bars, crosses and x's
        mask = SHAPES[int(label)][1](xx - cx, yy - cy, r, t)
        background = rng.uniform(0.1, 0.5) * _texture(rng, yy, xx, image_size)
        intensity = rng.uniform(0.3, 0.8)
        img = background + intensity * mask
        for _ in range(int(rng.integers(0, 4))):  # small distracting blobs
            bx, by = rng.uniform(0, s, size=2)
            br = rng.uniform(0.5, 0.12 * s)
            img = img + rng.uniform(0.2, 0.6) * ((xx - bx) ** 2 + (yy - by) ** 2 <= br**2)
        img = img + rng.normal(0.0, noise, size=xx.shape)
        images[i, 0] = np.clip(img, 0.0, 1.0)
    return images, labels


#: the most glyph classes :func:`make_glyphs` draws
MAX_GLYPHS = 64
#: the glyphs are the same for every data seed: a class means the same pattern in every split
GLYPH_SEED = 1234


def glyph_templates(num_classes: int, glyph_size: int = 5) -> np.ndarray:
    """``num_classes`` binary ``glyph_size`` x ``glyph_size`` patterns (``bool``), the same for
    every data seed: random pixel patterns with 35-65 % of their pixels on, each differing from
    every other in at least a quarter of its pixels. The first k of a larger set are the set of
    k, so that a data set with fewer classes is a subset of one with more."""
    if not 2 <= num_classes <= MAX_GLYPHS:
        raise ValueError(f"num_classes must be in 2..{MAX_GLYPHS}, got {num_classes}")
    if glyph_size < 3:
        raise ValueError(f"glyph_size must be >= 3, got {glyph_size}")
    rng = np.random.default_rng(GLYPH_SEED)
    cells = glyph_size * glyph_size
    min_dist = max(2, cells // 4)
    out: list[np.ndarray] = []
    while len(out) < num_classes:
        g = rng.random(cells) < 0.5
        if 0.35 <= g.mean() <= 0.65 and all(int((g != o).sum()) >= min_dist for o in out):
            out.append(g)
    return np.stack(out).reshape(num_classes, glyph_size, glyph_size)


def make_glyphs(n_samples: int = 4000, image_size: int = 10, num_classes: int = 16,
                noise: float = 0.1, seed: int = 0,
                glyph_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` as in :func:`make_shapes`: ``float32`` images ``(n, 1, size,
    size)`` in [0, 1] and ``int64`` labels; image ``i`` shows glyph ``labels[i]`` of
    :func:`glyph_templates` at a random position (wholly inside), with intensity 0.4-0.8 over a
    smooth background of amplitude 0.1-0.4 and Gaussian pixel noise of std ``noise``."""
    if image_size < glyph_size + 2:
        raise ValueError(f"image_size must be >= glyph_size + 2 = {glyph_size + 2}, got "
                         f"{image_size}")
    if n_samples < num_classes:
        raise ValueError(f"n_samples ({n_samples}) must be >= num_classes ({num_classes})")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    templates = glyph_templates(num_classes, glyph_size).astype(np.float64)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_samples) % num_classes).astype(np.int64)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    images = np.empty((n_samples, 1, image_size, image_size), dtype=np.float32)
    g = glyph_size
    for i, label in enumerate(labels):
        img = rng.uniform(0.1, 0.4) * _texture(rng, yy, xx, image_size)
        x0, y0 = rng.integers(0, image_size - g + 1, size=2)
        img[y0:y0 + g, x0:x0 + g] += rng.uniform(0.4, 0.8) * templates[int(label)]
        img = img + rng.normal(0.0, noise, size=xx.shape)
        images[i, 0] = np.clip(img, 0.0, 1.0)
    return images, labels
