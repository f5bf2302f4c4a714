"""Synthetic saliency scenes whose fixations come from a known model of attention.

Every scene is an RGB image of 1..``max_objects`` plain-coloured objects (discs, rectangles and
blobs, i.e. discs with a wavy outline) over a textured background: a random tint, colour noise
smoothed over a few pixels and one set of faint sinusoidal stripes in a random direction, plus a
little per-pixel Gaussian noise. Object centres are uniform over the whole frame (the object may
be cut by the border), radii uniform in ``[0.07, 0.2] * min(H, W)``, and each object's colour is
the background tint plus a step of random direction and random length in ``[0.08, 0.6]`` (RGB
units), so some objects stand out strongly and some barely. Later objects cover earlier ones.

**The attention model** (the ground truth; :func:`make_saliency_scenes_with_truth` returns it as
``probability``). The probability that a fixation lands on pixel ``x`` is::

    P(x) = w_c * C(x) + w_u / (H * W) + (1 - w_c - w_u) * sum_j  m_j * [x in V_j] / |V_j|

- ``C`` is the centre bias: an axis-aligned Gaussian around the image centre with standard
  deviations ``0.25 * H`` and ``0.25 * W``, normalised to sum 1 (:func:`centre_bias_map`);
  its weight ``w_c = centre_weight`` (default 0.25) is a minority of the mass.
- ``w_u = uniform_weight`` (default 0.05) spreads evenly over the frame (glances at nothing).
- ``V_j`` is the visible part of object ``j`` (after occlusion) and the object's share of the
  object mass is ``m_j = s_j / sum_k s_k`` with the salience
  ``s_j = conspicuity_j ** 2 * sqrt(|V_j|)``: the *conspicuity* is the Euclidean RGB distance
  between the object's mean colour and the mean colour of its local background (the
  non-object pixels within twice its radius of its centre; the whole background if that ring
  is empty), measured on the rendered image before the pixel noise, so it combines colour and
  luminance contrast; the *size term* ``sqrt(area)`` makes large objects draw more fixations,
  sublinearly. Fixations are spread uniformly over an object's visible pixels.

**Observers.** ``n_observers`` simulated observers each make ``fixations_per_observer``
fixations drawn independently from ``P``; a fixation is a pixel index ``(row, col)``, 0-based.
All observers' fixations of an image are pooled (``[n_observers * fixations_per_observer, 2]``).

**Density map.** The pooled fixation histogram blurred by a Gaussian of standard deviation
``sigma`` pixels (default ``max(1, 0.035 * max(H, W))``: about one degree of visual angle at
the usual viewing geometry of the saliency benchmarks, where one degree is about 1/30 of the
image width; 2.2 px for the default 48 x 64 frame), zero beyond the border, then divided by its
maximum (so a map lies in [0, 1] like an 8-bit map read from disk; not sum-normalised).

Since ``1 - w_c - w_u`` (70 % by default) of the mass sits on objects placed anywhere in the
frame, a model that sees the image can predict the density far better than the centre bias.

Everything is drawn from ``numpy.random.default_rng(seed)``: a seed fixes the data set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "SHAPES",
    "SaliencyScenes",
    "SalientObject",
    "centre_bias_map",
    "make_saliency_scenes",
    "make_saliency_scenes_with_truth",
]

#: object shapes, in the order ``SalientObject.kind`` names them
SHAPES: tuple[str, ...] = ("disc", "rectangle", "blob")


class SalientObject(NamedTuple):
    """One painted object and its part in the attention model."""

    kind: str
    #: centre (row, col) in pixels, possibly outside the frame's interior
    centre: tuple[float, float]
    radius: float
    #: visible pixels after the later objects were painted over it
    area: int
    #: RGB distance between the object's and its local background's mean colours
    conspicuity: float
    #: share of the object mass (the ``m_j`` of the model); the objects of a scene sum to 1
    share: float


class SaliencyScenes(NamedTuple):
    """The synthetic data and the model that made it (:func:`make_saliency_scenes_with_truth`)."""

    #: ``float32 [n, 3, H, W]`` in [0, 1]
    images: np.ndarray
    #: ``float32 [n, H, W]`` blurred fixation histograms, maximum 1 (0 where no fixation)
    densities: np.ndarray
    #: per image an ``int64 [k, 2]`` array of 0-based ``(row, col)`` fixations
    fixations: list[np.ndarray]
    #: ``float64 [n, H, W]`` the true fixation probability ``P``, each map summing to 1
    probability: np.ndarray
    #: ``float64 [H, W]`` the centre-bias map ``C`` (sums to 1), the same for every image
    centre_bias: np.ndarray
    #: per image the painted objects in painting order
    objects: list[list[SalientObject]]


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``G`` with ``G @ v`` = ``v`` convolved with a normalised Gaussian (zero padding)."""
    idx = np.arange(n, dtype=np.float64)
    d = idx[:, None] - idx[None, :]
    radius = max(1, int(np.ceil(4.0 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    norm = np.exp(-0.5 * (taps / sigma) ** 2).sum()
    g = np.exp(-0.5 * (d / sigma) ** 2) / norm
    g[np.abs(d) > radius] = 0.0
    return g


def _blur(maps: np.ndarray, gr: np.ndarray, gc: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of ``[..., H, W]`` maps with row / column matrices."""
    return gr @ maps @ gc.T


def centre_bias_map(size: tuple[int, int], spread: float = 0.25) -> np.ndarray:
    """The centre-bias map ``C``: a Gaussian around the image centre with standard deviations
    ``spread * H`` and ``spread * W``, normalised to sum 1 (``float64 [H, W]``)."""
    h, w = size
    rows = (np.arange(h) - (h - 1) / 2.0) / (spread * h)
    cols = (np.arange(w) - (w - 1) / 2.0) / (spread * w)
    c = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))
    return c / c.sum()


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_size(size: object) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}")
    h = _check_int("size[0] (height)", size[0], 16)
    w = _check_int("size[1] (width)", size[1], 16)
    return h, w


def _shape_mask(kind: str, dy: np.ndarray, dx: np.ndarray, r: float,
                rng: np.random.Generator) -> np.ndarray:
    if kind == "disc":
        return dy * dy + dx * dx <= r * r
    if kind == "rectangle":
        aspect = rng.uniform(0.5, 1.6)
        half_h, half_w = r * np.sqrt(aspect) * 0.85, r / np.sqrt(aspect) * 0.85
        return (np.abs(dy) <= half_h) & (np.abs(dx) <= half_w)
    # blob: a disc whose radius varies with the angle (two random harmonics)
    theta = np.arctan2(dy, dx)
    k1, k2 = rng.integers(2, 6, size=2)
    a1, a2 = rng.uniform(0.1, 0.25, size=2)
    p1, p2 = rng.uniform(0.0, 2 * np.pi, size=2)
    rad = r * (1.0 + a1 * np.sin(k1 * theta + p1) + a2 * np.sin(k2 * theta + p2))
    return np.sqrt(dy * dy + dx * dx) <= rad


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                g_small: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A tinted ``[3, H, W]`` background: smoothed colour noise plus faint stripes."""
    h, w = yy.shape
    tint = rng.uniform(0.2, 0.8, size=3)
    noise = _blur(rng.standard_normal((3, h, w)), *g_small)
    noise /= noise.std() + 1e-12
    period = rng.uniform(6.0, 16.0)
    angle = rng.uniform(0.0, np.pi)
    stripes = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period
                     + rng.uniform(0.0, 2 * np.pi))
    stripe_colour = rng.uniform(0.5, 1.0, size=3)
    return (tint[:, None, None] + rng.uniform(0.03, 0.07) * noise
            + rng.uniform(0.02, 0.05) * stripe_colour[:, None, None] * stripes[None])


def make_saliency_scenes_with_truth(
    n: int, size: int | tuple[int, int] = (48, 64), n_observers: int = 15,
    fixations_per_observer: int = 8, seed: int = 0, *, centre_weight: float = 0.25,
    uniform_weight: float = 0.05, sigma: float | None = None, noise: float = 0.03,
    max_objects: int = 4,
) -> SaliencyScenes:
    """Like :func:`make_saliency_scenes`, plus the true fixation probability of every image,
    the centre-bias map and the objects with their conspicuity and share of the object mass
    (the model is described in the module docstring)."""
    n = _check_int("n", n, 0)
    h, w = _check_size(size)
    n_observers = _check_int("n_observers", n_observers, 0)
    fixations_per_observer = _check_int("fixations_per_observer", fixations_per_observer, 0)
    seed = _check_int("seed", seed, 0)
    max_objects = _check_int("max_objects", max_objects, 1)
    if not (0.0 <= centre_weight and 0.0 <= uniform_weight
            and centre_weight + uniform_weight < 1.0):
        raise ValueError("centre_weight and uniform_weight must be >= 0 and sum to less than 1 "
                         f"(the rest goes to the objects), got {centre_weight} and "
                         f"{uniform_weight}")
    if sigma is None:
        sigma = max(1.0, 0.035 * max(h, w))
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    smooth = 0.06 * min(h, w)
    g_small = (_gaussian_matrix(h, smooth), _gaussian_matrix(w, smooth))
    g_fix = (_gaussian_matrix(h, sigma), _gaussian_matrix(w, sigma))
    centre = centre_bias_map((h, w))
    object_weight = 1.0 - centre_weight - uniform_weight
    k = n_observers * fixations_per_observer

    images = np.empty((n, 3, h, w), dtype=np.float32)
    probability = np.empty((n, h, w), dtype=np.float64)
    fixations: list[np.ndarray] = []
    objects: list[list[SalientObject]] = []
    histograms = np.zeros((n, h, w), dtype=np.float64)
    short = min(h, w)
    for i in range(n):
        img = _background(rng, yy, xx, g_small)
        owner = np.full((h, w), -1, dtype=np.int64)
        count = int(rng.integers(1, max_objects + 1))
        specs: list[tuple[str, float, float, float]] = []
        for j in range(count):
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            r = rng.uniform(0.07, 0.2) * short
            cy, cx = rng.uniform(0.0, h), rng.uniform(0.0, w)
            mask = _shape_mask(kind, yy - cy, xx - cx, r, rng)
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction) + 1e-12
            local = img[:, mask].mean(axis=1) if mask.any() else img.mean(axis=(1, 2))
            colour = np.clip(local + rng.uniform(0.08, 0.6) * direction, 0.0, 1.0)
            shading = 1.0 + 0.04 * ((yy - cy) / max(r, 1.0))
            img = np.where(mask[None], colour[:, None, None] * shading[None], img)
            owner[mask] = j
            specs.append((kind, float(cy), float(cx), float(r)))
        np.clip(img, 0.0, 1.0, out=img)

        background = owner < 0
        global_bg = img[:, background].mean(axis=1) if background.any() else img.mean((1, 2))
        salience = np.zeros(count)
        conspicuity = np.zeros(count)
        areas = np.zeros(count, dtype=np.int64)
        for j, (_, cy, cx, r) in enumerate(specs):
            visible = owner == j
            areas[j] = int(visible.sum())
            if areas[j] == 0:
                continue
            ring = background & ((yy - cy) ** 2 + (xx - cx) ** 2 <= (2.0 * r) ** 2)
            bg = img[:, ring].mean(axis=1) if ring.any() else global_bg
            conspicuity[j] = float(np.linalg.norm(img[:, visible].mean(axis=1) - bg))
            salience[j] = conspicuity[j] ** 2 * np.sqrt(areas[j])
        total = salience.sum()
        share = salience / total if total > 0 else (areas > 0) / max(1, int((areas > 0).sum()))
        p = centre_weight * centre + uniform_weight / (h * w)
        obj_part = np.zeros((h, w))
        for j in range(count):
            if areas[j]:
                obj_part[owner == j] = share[j] / areas[j]
        p = p + object_weight * obj_part
        p /= p.sum()
        probability[i] = p

        flat = rng.choice(h * w, size=k, p=p.ravel()) if k else np.zeros(0, dtype=np.int64)
        fix = np.stack([flat // w, flat % w], axis=1).astype(np.int64)
        np.add.at(histograms[i], (fix[:, 0], fix[:, 1]), 1.0)
        fixations.append(fix)
        objects.append([SalientObject(kind, (cy, cx), r, int(areas[j]), float(conspicuity[j]),
                                      float(share[j]))
                        for j, (kind, cy, cx, r) in enumerate(specs)])
        images[i] = img

    if noise > 0 and n > 0:
        images += noise * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    dens = _blur(histograms, *g_fix)
    peak = dens.reshape(n, -1).max(axis=1) if n else np.zeros(0)
    dens /= np.where(peak > 0, peak, 1.0)[:, None, None]
    return SaliencyScenes(images, dens.astype(np.float32), fixations, probability, centre,
                          objects)


def make_saliency_scenes(
    n: int, size: int | tuple[int, int] = (48, 64), n_observers: int = 15,
    fixations_per_observer: int = 8, seed: int = 0, **options: float,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(images, densities, fixations)``: ``n`` synthetic saliency scenes.

    ``images`` is ``float32 [n, 3, H, W]`` in [0, 1], ``densities`` ``float32 [n, H, W]``
    (blurred fixation histograms, maximum 1) and ``fixations`` a list of ``int64 [k, 2]``
    arrays of 0-based ``(row, col)`` pixel indices with ``k = n_observers *
    fixations_per_observer``. ``size`` is ``(height, width)`` or an int for a square.
    Deterministic for a given ``seed``. Keyword ``options`` (``centre_weight``,
    ``uniform_weight``, ``sigma``, ``noise``, ``max_objects``) are those of
    :func:`make_saliency_scenes_with_truth`, which also returns the true probability maps.
    """
    scenes = make_saliency_scenes_with_truth(n, size, n_observers, fixations_per_observer,
                                             seed, **options)
    return scenes.images, scenes.densities, scenes.fixations
