"""A synthetic semantic-segmentation data set: textured shapes on a textured background.

Each RGB scene holds 1..``max_objects`` objects painted one after another over a randomly
tinted, textured background (class 0), later objects covering earlier ones (the mask follows
the occlusion). Object class ``k >= 1`` is the ``k``-th entry of :data:`SCENE_CLASSES` and
fixes the object's *shape* and its *texture family* — stripes, checker, dots or a smooth
gradient, with a class-typical but jittered period — and a class-typical but jittered *colour*.
Colours and texture families are shared between classes in a crossed way (e.g. disc and
triangle are both reddish, disc and cross both striped), so neither colour alone nor texture
alone nor, after rotation and scaling, shape alone separates every class. Position, scale,
rotation (where it does not turn one shape into another: squares, diamonds, crosses, frames
and bars only tilt a little), colour and texture phase are random, and Gaussian noise is added
to every pixel.

Everything is drawn from ``numpy.random.default_rng(seed)``: a seed fixes the data set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["SCENE_CLASSES", "SceneObject", "make_scenes", "make_scenes_with_objects"]

_Shape = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _disc(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return u * u + v * v <= r * r


def _square(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r


def _triangle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    # apex at v = -r, base at v = 0.8 r: the half-width grows linearly towards the base
    return (v >= -r) & (v <= 0.8 * r) & (np.abs(u) <= (v + r) * 0.6)


def _ring(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    d2 = u * u + v * v
    inner = max(r - max(1.5, 0.4 * r), 0.0)
    return (d2 <= r * r) & (d2 >= inner * inner)


def _cross(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    t = max(1.0, 0.28 * r)
    au, av = np.abs(u), np.abs(v)
    return ((au <= t) & (av <= r)) | ((av <= t) & (au <= r))


def _diamond(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.abs(u) + np.abs(v) <= r


def _bar(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return (np.abs(v) <= max(1.2, 0.3 * r)) & (np.abs(u) <= 1.2 * r)


def _frame(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    d = np.maximum(np.abs(u), np.abs(v))
    return (d <= 0.85 * r) & (d >= 0.85 * r - max(1.5, 0.35 * r))


def _crescent(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return (u * u + v * v <= r * r) & ((u - 0.5 * r) ** 2 + v * v > (0.75 * r) ** 2)


_RED, _BLUE, _GREEN = (0.85, 0.25, 0.2), (0.2, 0.35, 0.85), (0.25, 0.75, 0.3)
_YELLOW, _PURPLE = (0.9, 0.8, 0.2), (0.65, 0.3, 0.75)


@dataclass(frozen=True)
class _ObjectClass:
    name: str
    shape: _Shape
    colour: tuple[float, float, float]
    texture: str  # "stripes" | "checker" | "dots" | "gradient"
    period: float  # texture period in pixels at size 32 (scaled with the image size)
    max_tilt: float  # rotation drawn uniformly from [-max_tilt, max_tilt] radians


_OBJECTS: tuple[_ObjectClass, ...] = (
    _ObjectClass("disc", _disc, _RED, "stripes", 4.0, 0.0),
    _ObjectClass("square", _square, _BLUE, "checker", 6.0, 0.35),
    _ObjectClass("triangle", _triangle, _RED, "dots", 4.0, np.pi),
    _ObjectClass("ring", _ring, _BLUE, "gradient", 0.0, 0.0),
    _ObjectClass("cross", _cross, _GREEN, "stripes", 3.0, 0.35),
    _ObjectClass("diamond", _diamond, _YELLOW, "checker", 4.0, 0.35),
    _ObjectClass("bar", _bar, _GREEN, "dots", 3.0, 0.35),
    _ObjectClass("frame", _frame, _YELLOW, "stripes", 6.0, 0.35),
    _ObjectClass("crescent", _crescent, _PURPLE, "checker", 3.0, np.pi),
)

#: class id -> name: ``background`` then the object shapes; ``num_classes = k`` uses the first k
SCENE_CLASSES: tuple[str, ...] = ("background", *(o.name for o in _OBJECTS))


class SceneObject(NamedTuple):
    """One painted object of a scene (from :func:`make_scenes_with_objects`)."""

    class_id: int
    #: pixels of the object's own shape inside the image
    drawn_area: int
    #: pixels still showing it after the later objects were painted over it
    visible_area: int


def _texture(kind: str, u: np.ndarray, v: np.ndarray, r: float, period: float,
             rng: np.random.Generator) -> np.ndarray:
    """A pattern in [0, 1] over the object's rotated coordinates ``(u, v)``."""
    if kind == "gradient":
        p = np.clip((u / (2 * r)) + 0.5, 0.0, 1.0)
        return p if rng.random() < 0.5 else 1.0 - p
    ph_u, ph_v = rng.uniform(0.0, period, size=2)
    if kind == "stripes":
        a = rng.uniform(0.0, np.pi)
        w = np.cos(a) * u + np.sin(a) * v + ph_u
        return (np.mod(w, period) < 0.5 * period).astype(np.float64)
    if kind == "checker":
        cu = np.mod(u + ph_u, period) < 0.5 * period
        cv = np.mod(v + ph_v, period) < 0.5 * period
        return (cu ^ cv).astype(np.float64)
    if kind == "dots":
        du = np.mod(u + ph_u, period) - 0.5 * period
        dv = np.mod(v + ph_v, period) - 0.5 * period
        return (du * du + dv * dv <= (0.3 * period) ** 2).astype(np.float64)
    raise AssertionError(f"unknown texture {kind!r}")


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                size: int) -> np.ndarray:
    """A randomly tinted ``[3, size, size]`` background with low-contrast sinusoid texture."""
    tint = rng.uniform(0.15, 0.75, size=3)
    pattern = np.zeros_like(xx)
    for _ in range(2):
        cycles = rng.uniform(0.5, 4.0)
        a = rng.uniform(0.0, 2 * np.pi)
        k = 2 * np.pi * cycles / size
        pattern += rng.uniform(0.5, 1.0) * np.sin(k * (np.cos(a) * xx + np.sin(a) * yy)
                                                  + rng.uniform(0.0, 2 * np.pi))
    amp = rng.uniform(0.05, 0.15)
    return tint[:, None, None] * (1.0 + amp * pattern)[None]


def make_scenes_with_objects(
    n: int, size: int = 32, num_classes: int = 5, seed: int = 0, noise: float = 0.05,
    max_objects: int = 4,
) -> tuple[np.ndarray, np.ndarray, list[list[SceneObject]]]:
    """Like :func:`make_scenes`, plus for every scene the list of its painted objects in
    painting order (class, drawn area and visible area; the difference is the occlusion)."""
    for name, value in (("n", n), ("size", size), ("num_classes", num_classes),
                        ("max_objects", max_objects), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if not 2 <= num_classes <= len(SCENE_CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(SCENE_CLASSES)} (background plus 1.."
                         f"{len(_OBJECTS)} of the shapes {', '.join(SCENE_CLASSES[1:])}), "
                         f"got {num_classes}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")

    rng = np.random.default_rng(seed)
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    scale = s / 32.0
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    objects: list[list[SceneObject]] = []
    for i in range(n):
        img = _background(rng, yy, xx, size)
        label = np.zeros((size, size), dtype=np.int64)
        instance = np.zeros((size, size), dtype=np.int64)
        count = int(rng.integers(1, max_objects + 1))
        classes = rng.integers(1, num_classes, size=count)
        drawn: list[int] = []
        for k, cls in enumerate(classes, start=1):
            spec = _OBJECTS[int(cls) - 1]
            r = rng.uniform(0.12, 0.28) * s
            cx, cy = rng.uniform(0.1 * s, 0.9 * s, size=2)
            a = rng.uniform(-spec.max_tilt, spec.max_tilt) if spec.max_tilt else 0.0
            ca, sa = np.cos(a), np.sin(a)
            dx, dy = xx - cx, yy - cy
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy
            m = spec.shape(u, v, r)
            period = spec.period * scale * rng.uniform(0.85, 1.15)
            p = _texture(spec.texture, u, v, r, period, rng)
            colour = np.clip(np.asarray(spec.colour) + rng.normal(0.0, 0.08, size=3), 0.05, 1.0)
            colour = colour * rng.uniform(0.8, 1.1)
            contrast = rng.uniform(0.35, 0.6)
            obj = colour[:, None, None] * (1.0 - contrast * p)[None]
            img = np.where(m[None], obj, img)
            label[m] = cls
            instance[m] = k
            drawn.append(int(m.sum()))
        visible = np.bincount(instance.ravel(), minlength=count + 1)
        objects.append([SceneObject(int(c), d, int(visible[k]))
                        for k, (c, d) in enumerate(zip(classes, drawn, strict=True), start=1)])
        images[i] = img
        masks[i] = label
    if noise > 0 and n > 0:
        images += noise * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return images, masks, objects


def make_scenes(n: int, size: int = 32, num_classes: int = 5, seed: int = 0,
                noise: float = 0.05, max_objects: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(images, masks)``: ``n`` synthetic scenes, ``float32`` images ``[n, 3, size, size]``
    in [0, 1] and ``int64`` masks ``[n, size, size]`` with values in ``[0, num_classes)``.

    Class 0 is the background and class ``k`` the shape ``SCENE_CLASSES[k]``; each scene holds
    1..``max_objects`` objects of classes drawn uniformly from ``1..num_classes - 1``, later
    ones occluding earlier ones. ``noise`` is the standard deviation of the per-pixel Gaussian
    noise. Deterministic for a given ``seed``. Raises ``ValueError`` for ``num_classes`` outside
    ``2..len(SCENE_CLASSES)`` and other invalid arguments.
    """
    images, masks, _ = make_scenes_with_objects(n, size, num_classes, seed, noise, max_objects)
    return images, masks
