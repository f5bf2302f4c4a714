"""Baselines of the information gain: the uniform density and the centre bias fitted on a
training split (the reference a saliency model must beat)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from nastk.tasks.saliency.distribution import as_density
from nastk.tasks.saliency.geometry import MapLike, Shape, as_shape, resize_to

__all__ = ["CenterBias", "uniform_baseline"]


def uniform_baseline(shape: Shape) -> torch.Tensor:
    """The uniform density ``1 / (H * W)`` of a ``(H, W)`` map (float64); as the IG baseline it
    gives ``log2 p_baseline = -log2(H * W)`` at every fixation."""
    h, w = as_shape(shape)
    return torch.full((h, w), 1.0 / (h * w), dtype=torch.float64)


class CenterBias:
    """A centre-bias baseline for information gain: the **mean of the training split's density
    maps**, each normalised to sum 1 (every image weighs the same) and brought to a fixed
    ``size`` grid (adaptive average pooling when the map is at least as large in both dims,
    else bilinear :func:`resize_to`).

    ``fit(maps)`` takes an iterable of density maps (``[H, W]`` tensors or arrays of any sizes,
    or target dicts with a ``"density"`` entry) and returns ``self``; calling the fitted
    baseline, ``cb(shape)``, returns its density bilinearly resized to ``shape``, clipped at 0
    and renormalised to sum 1 (float64; the last shape's map is cached, do not modify it).
    ``density`` holds the fitted ``size`` map (None before ``fit``); :meth:`from_density`
    restores a saved one. Fit it on the training split only.
    """

    def __init__(self, size: Shape = (64, 64)) -> None:
        self.size = as_shape(size, "CenterBias size")
        self.density: torch.Tensor | None = None
        self.n_maps = 0
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def __repr__(self) -> str:
        state = f"fitted on {self.n_maps} maps" if self.density is not None else "not fitted"
        return f"CenterBias(size={self.size}, {state})"

    @classmethod
    def from_density(cls, density: MapLike) -> CenterBias:
        """A baseline whose fitted map is ``density`` (e.g. a saved ``CenterBias.density``)."""
        d = torch.from_numpy(as_density(density, "CenterBias density", zero_is_uniform=False))
        cb = cls(tuple(d.shape))
        cb.density = d
        return cb

    def fit(self, maps: Iterable[Any]) -> CenterBias:
        acc = torch.zeros(self.size, dtype=torch.float64)
        n = 0
        for m in maps:
            if isinstance(m, Mapping):
                m = m["density"]
            d = torch.from_numpy(as_density(m, f"CenterBias.fit: map {n}", zero_is_uniform=False))
            if d.shape[0] >= self.size[0] and d.shape[1] >= self.size[1]:
                r = F.adaptive_avg_pool2d(d[None, None], self.size)[0, 0]
            else:
                r = resize_to(d, self.size).clamp_min(0.0)
            acc += r / r.sum()
            n += 1
        if n == 0:
            raise ValueError("CenterBias.fit: no maps given")
        self.density = acc / n
        self.n_maps = n
        self._cache = {}
        return self

    def __call__(self, shape: Shape) -> torch.Tensor:
        if self.density is None:
            raise RuntimeError("CenterBias is not fitted: call fit(training density maps) "
                               "first")
        hw = as_shape(shape)
        if hw not in self._cache:
            r = resize_to(self.density, hw).clamp_min(0.0)
            self._cache = {hw: r / r.sum()}  # the last shape: a split usually has one or few
        return self._cache[hw]
