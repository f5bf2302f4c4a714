"""A synthetic object-detection data set: textured shapes of several classes on a textured
background, 0..``max_objects`` per scene, with partial occlusion.

Each scene is a randomly tinted background carrying a smooth texture (a sum of low-frequency
sinusoids, i.e. smooth noise, plus faint stripes), over which objects are painted one after
another, later objects covering earlier ones. An object's class is its *shape* —
:data:`SHAPE_CLASSES` ``[label]`` — and nothing else: its colour is random (only kept away from
the background tint so the object can be seen) and its texture (stripes, checker, dots or a
smooth gradient, random period, angle and phase) is random too, so neither colour nor texture
gives the class away and a detector must learn shape.

Geometry (``S = size``): an object fills a box of width ``w`` and height ``h`` whose geometric
mean ``sqrt(w * h)`` is uniform in ``[0.15, 0.6] * S`` and whose aspect ratio ``w / h`` is
log-uniform in ``[0.5, 2]``; each side is then clipped to ``[max(4, 0.1 * S), 0.85 * S]``
pixels. The box lies entirely inside the image (uniform position). The shape is stretched to
the box, and its ground-truth box is the tight box of its *full* (unoccluded) pixel mask in
continuous pixel coordinates: ``x1`` = first covered column, ``x2`` = last covered column + 1
(so ``x2 - x1`` is the width in pixels), likewise for rows — always inside the image and at
least 2 px wide and high. ``area`` is the box area ``(x2 - x1) * (y2 - y1)``.

Occlusion rule (``min_visible``): every painted object keeps at least ``min_visible`` of its
own pixels visible in the final scene. A new object that would leave an earlier one with a
smaller visible fraction is re-placed (new position, size, aspect; the class is kept) up to
``_TRIES`` times and otherwise left out of the scene altogether. So no object is ever painted
without a box — there is no unlabelled clutter — and every box in the targets shows at least
``min_visible`` of its object. Objects are left out only rarely; a scene may then hold fewer
than the number of objects drawn for it (but at least one when ``min_objects >= 1``: the first
object always fits).

Object counts are uniform in ``min_objects..max_objects`` and classes uniform in
``0..num_classes - 1``. Gaussian noise of standard deviation ``noise`` is added to every pixel.
Everything is drawn from ``numpy.random.default_rng(seed)``: a seed fixes the data set. The
work is vectorised over scenes (one pass per object slot), so 1000 scenes of 64 x 64 take a
fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SHAPE_CLASSES", "make_scenes", "make_scenes_with_instances"]

#: re-placements of an object that would cover an earlier one too much, before it is left out
_TRIES = 8

#: class names; label ``k`` is the shape ``SHAPE_CLASSES[k]`` (``num_classes = c`` uses the first c)
SHAPE_CLASSES: tuple[str, ...] = (
    "square", "disc", "triangle", "ring", "cross", "diamond", "frame", "hourglass",
)

# A shape maps the object's normalised coordinates (u, v) in [-1, 1] over its box (u across,
# v down; [t, S, S] float32) and its half sides in pixels (hw, hh; [t, 1, 1]) to a bool mask.
_Shape = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _line(hw: np.ndarray, hh: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised thicknesses ``(tu, tv)`` of a stroke ``fraction`` of the shorter half side
    thick (at least 1.6 px, at most 45 % of each half side), equal in pixels on both axes."""
    px = np.clip(fraction * np.minimum(hw, hh), 1.6, None)
    return np.minimum(px / hw, 0.45), np.minimum(px / hh, 0.45)


def _square(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)


def _disc(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _triangle(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    # apex at the top edge, base along the bottom edge
    return (np.abs(v) <= 1.0) & (np.abs(u) <= 0.5 * (v + 1.0))


def _ring(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    tu, tv = _line(hw, hh, 0.35)
    inner_u, inner_v = u / (1.0 - tu), v / (1.0 - tv)
    return (u * u + v * v <= 1.0) & (inner_u * inner_u + inner_v * inner_v > 1.0)


def _cross(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    tu, tv = _line(hw, hh, 0.3)
    au, av = np.abs(u), np.abs(v)
    inside = (au <= 1.0) & (av <= 1.0)
    return inside & ((au <= tu) | (av <= tv))


def _diamond(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    return np.abs(u) + np.abs(v) <= 1.0


def _frame(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    tu, tv = _line(hw, hh, 0.3)
    au, av = np.abs(u), np.abs(v)
    return (au <= 1.0) & (av <= 1.0) & ((au >= 1.0 - tu) | (av >= 1.0 - tv))


def _hourglass(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    # two triangles meeting at the centre, their bases along the top and bottom edges
    return (np.abs(v) <= 1.0) & (np.abs(u) <= np.abs(v) + 0.08)


_SHAPES: tuple[_Shape, ...] = (_square, _disc, _triangle, _ring, _cross, _diamond, _frame,
                               _hourglass)
assert len(_SHAPES) == len(SHAPE_CLASSES)


def _check_args(n: int, size: int, num_classes: int, seed: int, max_objects: int,
                min_objects: int, noise: float, min_visible: float) -> None:
    for name, value in (("n", n), ("size", size), ("num_classes", num_classes), ("seed", seed),
                        ("max_objects", max_objects), ("min_objects", min_objects)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_CLASSES)} (the shapes "
                         f"{', '.join(SHAPE_CLASSES)}), got {num_classes}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if not 0 <= min_objects <= max_objects <= 100:
        raise ValueError(f"need 0 <= min_objects <= max_objects <= 100, got min_objects="
                         f"{min_objects}, max_objects={max_objects}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not 0.0 <= min_visible <= 1.0:
        raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")


def _backgrounds(rng: np.random.Generator, n: int, size: int, yy: np.ndarray,
                 xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 3, S, S]`` float32 textured backgrounds and their ``[n, 3]`` tints."""
    tint = rng.uniform(0.15, 0.85, size=(n, 3)).astype(np.float32)
    pattern = np.zeros((n, size, size), dtype=np.float32)
    for cycles_lo, cycles_hi, amp_lo, amp_hi in ((0.5, 2.0, 0.5, 1.0), (1.0, 4.0, 0.3, 0.7),
                                                 (6.0, 12.0, 0.0, 0.35)):  # last: stripes
        cycles = rng.uniform(cycles_lo, cycles_hi, size=n)
        a = rng.uniform(0.0, 2 * np.pi, size=n)
        k = (2 * np.pi * cycles / size).astype(np.float32)
        kx, ky = (k * np.cos(a))[:, None, None], (k * np.sin(a))[:, None, None]
        phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
        amp = rng.uniform(amp_lo, amp_hi, size=(n, 1, 1)).astype(np.float32)
        # sin(kx x + ky y + phase), separated into row and column factors (no [n, S, S] sin)
        ax, by = kx * xx[:1] + phase, ky * yy[:, :1]  # [n, 1, S], [n, S, 1]
        pattern += (amp * np.sin(ax)) * np.cos(by) + (amp * np.cos(ax)) * np.sin(by)
    contrast = rng.uniform(0.08, 0.2, size=(n, 1, 1)).astype(np.float32)
    images = tint[:, :, None, None] * (1.0 + contrast * pattern)[:, None]
    return images.astype(np.float32, copy=False), tint


def _colours(rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    """Random ``[t, 3]`` object colours, class-independent, at least 0.3 away from the
    background ``tint`` on some channel (the farthest channel is pushed away otherwise)."""
    c = rng.uniform(0.0, 1.0, size=tint.shape).astype(np.float32)
    d = c - tint
    far = np.abs(d).argmax(axis=1)
    rows = np.arange(len(c))
    weak = np.abs(d[rows, far]) < 0.3
    t = tint[rows, far]
    pushed = np.where(t > 0.5, t - rng.uniform(0.3, 0.5, size=len(c)),
                      t + rng.uniform(0.3, 0.5, size=len(c)))
    c[rows[weak], far[weak]] = np.clip(pushed[weak], 0.0, 1.0)
    return c


def _textures(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, hw: np.ndarray,
              scale: float) -> np.ndarray:
    """``[t, S, S]`` float32 patterns in [0, 1] over pixel offsets ``(dx, dy)`` from each
    object's centre; the texture family is random per object (not tied to the class)."""
    t = dx.shape[0]
    out = np.empty(dx.shape, dtype=np.float32)
    family = rng.integers(0, 4, size=t)
    period = (rng.uniform(3.0, 7.0, size=t) * scale).astype(np.float32)[:, None, None]
    angle = rng.uniform(0.0, np.pi, size=t)
    ca = np.cos(angle).astype(np.float32)[:, None, None]
    sa = np.sin(angle).astype(np.float32)[:, None, None]
    phase = (rng.uniform(0.0, 1.0, size=(t, 2)) * period[:, :, 0]).astype(np.float32)
    pu, pv = phase[:, 0, None, None], phase[:, 1, None, None]
    for f in range(4):
        sel = np.flatnonzero(family == f)
        if sel.size == 0:
            continue
        u = ca[sel] * dx[sel] + sa[sel] * dy[sel] + pu[sel]
        v = -sa[sel] * dx[sel] + ca[sel] * dy[sel] + pv[sel]
        p = period[sel]
        if f == 0:  # stripes
            out[sel] = np.mod(u, p) < 0.5 * p
        elif f == 1:  # checker
            out[sel] = (np.mod(u, p) < 0.5 * p) ^ (np.mod(v, p) < 0.5 * p)
        elif f == 2:  # dots
            du, dv = np.mod(u, p) - 0.5 * p, np.mod(v, p) - 0.5 * p
            out[sel] = du * du + dv * dv <= (0.3 * p) ** 2
        else:  # smooth gradient across the object
            out[sel] = np.clip(0.5 + (u - pu[sel]) / (2.0 * hw[sel]), 0.0, 1.0)
    return out


def make_scenes_with_instances(
    n: int, size: int = 64, num_classes: int = len(SHAPE_CLASSES), *, seed: int,
    max_objects: int = 4, min_objects: int = 0, noise: float = 0.05, min_visible: float = 0.4,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]], np.ndarray]:
    """Like :func:`make_scenes`, plus what the occlusion did (for checks).

    Returns ``(images, targets, instances)``: each target dict also holds ``drawn_area``
    (``int64 [k]``, pixels of the object's full shape) and ``visible_area`` (``int64 [k]``,
    its pixels still showing in the final scene); ``instances`` is ``int8 [n, S, S]``, ``0``
    for the background and ``i + 1`` where the ``i``-th object of the scene's targets is on
    top. The same arguments and seed give the same images and boxes as :func:`make_scenes`.
    """
    _check_args(n, size, num_classes, seed, max_objects, min_objects, noise, min_visible)
    rng = np.random.default_rng(seed)
    s = float(size)
    k_max = max_objects
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    images, tint = _backgrounds(rng, n, size, yy, xx)
    counts = rng.integers(min_objects, max_objects + 1, size=n)
    classes = rng.integers(0, num_classes, size=(n, max(k_max, 1)))
    inst = np.zeros((n, size, size), dtype=np.int8)  # slot + 1 of the object on top
    drawn = np.zeros((n, k_max + 1), dtype=np.int64)  # column 0: unused (background)
    visible = np.zeros((n, k_max + 1), dtype=np.int64)
    boxes = np.zeros((n, k_max + 1, 4), dtype=np.float32)
    placed = np.zeros((n, k_max + 1), dtype=bool)
    lo_side, hi_side = max(4.0, 0.1 * s), 0.85 * s

    for j in range(1, k_max + 1):
        todo = np.flatnonzero(counts >= j)
        for _ in range(_TRIES):
            t = todo.size
            if t == 0:
                break
            # geometry of the proposals
            mean_side = rng.uniform(0.15, 0.6, size=t) * s
            aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=t))
            w = np.clip(mean_side * np.sqrt(aspect), lo_side, hi_side)
            h = np.clip(mean_side / np.sqrt(aspect), lo_side, hi_side)
            cx = rng.uniform(0.5 * w, s - 0.5 * w)
            cy = rng.uniform(0.5 * h, s - 0.5 * h)
            flip = rng.random(t) < 0.5  # vertical flip (triangles point up or down)
            hw = (0.5 * w).astype(np.float32)[:, None, None]
            hh = (0.5 * h).astype(np.float32)[:, None, None]
            dx = xx - cx.astype(np.float32)[:, None, None]
            dy = yy - cy.astype(np.float32)[:, None, None]
            u = dx / hw
            v = dy * (np.where(flip, -1.0, 1.0).astype(np.float32)[:, None, None] / hh)
            cls = classes[todo, j - 1]
            m = np.empty((t, size, size), dtype=bool)
            for c in np.unique(cls):
                sel = np.flatnonzero(cls == c)
                m[sel] = _SHAPES[int(c)](u[sel], v[sel], hw[sel], hh[sel])
            # the full shape's tight box
            rows, cols = m.any(axis=2), m.any(axis=1)
            y1 = rows.argmax(axis=1)
            y2 = size - rows[:, ::-1].argmax(axis=1)
            x1 = cols.argmax(axis=1)
            x2 = size - cols[:, ::-1].argmax(axis=1)
            area = m.sum(axis=(1, 2))
            ok = (area > 0) & (x2 - x1 >= 2) & (y2 - y1 >= 2)
            # pixels each earlier object would lose under the proposal
            if j > 1:
                idx = (np.arange(t)[:, None, None] * (k_max + 1) + inst[todo])[m]
                lost = np.bincount(idx, minlength=t * (k_max + 1)).reshape(t, k_max + 1)
                after = visible[todo] - lost
                keep = after[:, 1:j] >= min_visible * drawn[todo, 1:j]
                ok &= keep.all(axis=1)
            else:
                after = visible[todo]
            acc = np.flatnonzero(ok)
            if acc.size:
                scenes = todo[acc]
                ma = m[acc]
                tex = _textures(rng, dx[acc], dy[acc], hw[acc], s / 64.0)
                colour = _colours(rng, tint[scenes])
                contrast = rng.uniform(0.2, 0.45, size=(acc.size, 1, 1)).astype(np.float32)
                obj = colour[:, :, None, None] * (1.0 - contrast * tex)[:, None]
                images[scenes] = np.where(ma[:, None], obj, images[scenes])
                inst[scenes] = np.where(ma, np.int8(j), inst[scenes])
                visible[scenes] = after[acc]
                visible[scenes, j] = area[acc]
                drawn[scenes, j] = area[acc]
                boxes[scenes, j] = np.stack([x1[acc], y1[acc], x2[acc], y2[acc]], axis=1)
                placed[scenes, j] = True
            todo = todo[~ok]

    if noise > 0 and n > 0:
        images += noise * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)

    targets: list[dict[str, np.ndarray]] = []
    for i in range(n):
        slots = np.flatnonzero(placed[i])
        b = boxes[i, slots].reshape(-1, 4).astype(np.float32)
        targets.append({
            "boxes": b,
            "labels": classes[i, slots - 1].astype(np.int64),
            "area": ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).astype(np.float32),
            "drawn_area": drawn[i, slots].astype(np.int64),
            "visible_area": visible[i, slots].astype(np.int64),
        })
        # renumber the instance map to positions in the targets (slots are 1..k_max)
        if slots.size and not np.array_equal(slots, np.arange(1, slots.size + 1)):
            lut = np.zeros(k_max + 1, dtype=np.int8)
            lut[slots] = np.arange(1, slots.size + 1, dtype=np.int8)
            inst[i] = lut[inst[i]]
    return images, targets, inst


def make_scenes(
    n: int, size: int = 64, num_classes: int = len(SHAPE_CLASSES), *, seed: int,
    max_objects: int = 4, min_objects: int = 0, noise: float = 0.05, min_visible: float = 0.4,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """``(images, targets)``: ``n`` synthetic detection scenes.

    ``images`` is ``float32 [n, 3, size, size]`` in [0, 1]; ``targets[i]`` a dict of numpy
    arrays for scene ``i``, objects in painting order (later ones may cover earlier ones):

    - ``boxes``: ``float32 [k, 4]`` xyxy, continuous pixel coordinates (width ``x2 - x1``),
      the tight box of the object's full shape, inside the image, at least 2 px each way;
    - ``labels``: ``int64 [k]`` in ``0..num_classes - 1`` (the shape ``SHAPE_CLASSES[label]``);
    - ``area``: ``float32 [k]``, the box area.

    ``k`` is drawn uniformly from ``min_objects..max_objects`` (so 0-object scenes occur when
    ``min_objects == 0``); an object that cannot be placed without leaving an earlier one less
    than ``min_visible`` of its pixels visible is left out (see the module docstring), so
    every object in the targets shows at least ``min_visible`` of its pixels and no object is
    painted without a box. ``noise`` is the standard deviation of per-pixel Gaussian noise.
    Deterministic for a given ``seed``. Raises ``ValueError`` for ``num_classes`` outside
    ``1..len(SHAPE_CLASSES)``, ``size < 16`` and other invalid arguments.
    """
    images, targets, _ = make_scenes_with_instances(
        n, size, num_classes, seed=seed, max_objects=max_objects, min_objects=min_objects,
        noise=noise, min_visible=min_visible)
    keys = ("boxes", "labels", "area")
    return images, [{k: t[k] for k in keys} for t in targets]
