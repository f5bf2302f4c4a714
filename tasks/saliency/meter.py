"""The split meter of saliency: every image of a split scored by each benchmark metric, then
the means over images (as the benchmarks average)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nastk.tasks.saliency.auc import (
    auc_borji,
    auc_judd,
    check_splits,
    minmax,
    roc_area,
    sauc_from_pool,
    threshold_grid,
)
from nastk.tasks.saliency.baseline import uniform_baseline
from nastk.tasks.saliency.blur import gaussian_blur, gaussian_kernel1d
from nastk.tasks.saliency.distribution import cc, ground_truth, information_gain, kld, nss, sim
from nastk.tasks.saliency.geometry import (
    as_tensor,
    fixation_points,
    linear_indices,
    rescale_points,
    resize_to,
    single_channel,
    target_parts,
)

__all__ = ["SaliencyMeter"]


class SaliencyMeter:
    """Streaming saliency metrics over a split: per-image scores, then means over images.

    ``update(pred_maps, targets)``: ``pred_maps`` ``[N, 1, H, W]`` or ``[N, H, W]`` (tensor or
    array; the network's saliency maps, any resolution), ``targets`` a list of ``N`` dicts
    ``{"density": [H_i, W_i], "fixations": [k_i, 2]}`` at each image's own ground-truth
    resolution. Each prediction is resized to its ground truth (:func:`resize_to`), then, if
    ``blur_sigma`` is set, blurred by :func:`gaussian_blur` at that resolution (sigma in
    ground-truth pixels; a ``blur_kernel``-tap kernel when given, e.g. 11), and scored by the
    package's metric functions (``auc``, ``distribution``).

    ``compute()`` returns the means over the images added: ``cc``, ``kld``, ``sim`` over every
    image; ``auc_judd``, ``auc_borji``, ``sauc``, ``nss``, ``ig_uniform`` and, when a
    ``baseline`` is given (a map, or a callable ``shape -> map`` such as a fitted
    :class:`~nastk.tasks.saliency.baseline.CenterBias`), ``ig`` over the images with
    fixations. An image without fixations is skipped for the location metrics explicitly and
    counted in ``skipped_no_fixations`` (never a NaN in a mean); when no image of the split has
    fixations those keys are absent.

    Randomness is seeded per image, independent of batching: image ``i`` (in update order)
    uses ``seed=[seed, 0, i]`` for AUC-Borji and ``[seed, 1, i]`` for sAUC. ``auc_splits``
    (``n_splits`` of both; None: their deterministic limits) and ``step`` as in
    :func:`auc_borji`.

    sAUC needs the whole split, so it is computed in ``compute()``: the negatives of image
    ``i`` are the fixated pixels of every other image (each image's binary fixation map,
    mapped to image ``i``'s size by :func:`rescale_points`, concatenated in update order), as
    in :func:`auc_shuffled`. An image with fixations whose split has no other fixations is
    skipped for ``sauc`` (counted in ``skipped_sauc_no_others``). For this the meter keeps
    the prediction of every image with fixations (detached, on the CPU, at the prediction's
    resolution: ``N * H * W`` values) and every image's fixations and shape; ``sauc=False``
    keeps none and omits ``sauc``.
    """

    _LOCATION = ("auc_judd", "auc_borji", "nss", "ig_uniform", "ig")
    _DISTRIBUTION = ("cc", "kld", "sim")

    def __init__(self, blur_sigma: float | None = None, auc_splits: int | None = 100,
                 seed: int = 0, baseline: Any = None, *, step: float = 0.1,
                 sauc: bool = True, blur_kernel: int | None = None) -> None:
        if blur_sigma is not None and not (math.isfinite(blur_sigma) and blur_sigma >= 0):
            raise ValueError(f"blur_sigma must be None or >= 0 pixels, got {blur_sigma!r}")
        if blur_kernel is not None and blur_sigma:
            gaussian_kernel1d(blur_sigma, size=blur_kernel)  # the kernel size is checked
        self.blur_kernel = blur_kernel
        check_splits(auc_splits)
        threshold_grid(step)
        self.blur_sigma = blur_sigma
        self.auc_splits = auc_splits
        self.seed = int(seed)
        self.baseline = baseline
        self.step = step
        self.sauc = bool(sauc)
        self.reset()

    def reset(self) -> None:
        """Forget every image added."""
        self.scores: dict[str, list[float]] = {k: [] for k in
                                               (*self._DISTRIBUTION, *self._LOCATION)}
        self.n_images = 0
        self.skipped_no_fixations = 0
        self.skipped_sauc_no_others = 0
        self._preds: list[torch.Tensor | None] = []  # None for an image without fixations
        self._shapes: list[tuple[int, int]] = []
        self._fix: list[np.ndarray] = []  # per image: unique fixated (row, col), [m, 2]

    def _score_map(self, pred: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        m = resize_to(pred.to(device="cpu", dtype=torch.float64), shape)
        if self.blur_sigma:
            m = gaussian_blur(m, self.blur_sigma, kernel=self.blur_kernel)
        return m.numpy()

    def update(self, pred_maps: Any, targets: Sequence[Mapping[str, Any]]) -> None:
        """Score a batch: see the class docstring."""
        preds = single_channel(as_tensor(pred_maps), "SaliencyMeter.update")
        if len(targets) != preds.shape[0]:
            raise ValueError(f"SaliencyMeter.update: {preds.shape[0]} predictions but "
                             f"{len(targets)} targets")
        for pred, target in zip(preds, targets, strict=True):
            density, fixations = target_parts(target, self.n_images, "SaliencyMeter.update")
            g = ground_truth(density, f"SaliencyMeter image {self.n_images}")
            shape = (int(g.shape[0]), int(g.shape[1]))
            s = self._score_map(pred, shape)
            self.scores["cc"].append(cc(s, g))
            self.scores["kld"].append(kld(s, g))
            self.scores["sim"].append(sim(s, g))
            pts = fixation_points(fixations, f"SaliencyMeter image {self.n_images}: fixations")
            lin = np.unique(linear_indices(pts, shape, f"SaliencyMeter image {self.n_images}"))
            if lin.size == 0:
                self.skipped_no_fixations += 1
            else:
                i = self.n_images
                self.scores["auc_judd"].append(auc_judd(s, pts))
                self.scores["auc_borji"].append(
                    auc_borji(s, pts, self.auc_splits, self.step, seed=[self.seed, 0, i]))
                self.scores["nss"].append(nss(s, pts))
                self.scores["ig_uniform"].append(information_gain(s, pts, uniform_baseline))
                if self.baseline is not None:
                    self.scores["ig"].append(information_gain(s, pts, self.baseline))
            if self.sauc:
                self._preds.append(pred.detach().to("cpu").clone() if lin.size else None)
                self._shapes.append(shape)
                self._fix.append(np.stack([lin // shape[1], lin % shape[1]], axis=1))
            self.n_images += 1

    def _sauc_scores(self) -> list[float]:
        """Shuffled AUC of every image with fixations whose split has other fixations."""
        with_fix = [i for i, f in enumerate(self._fix) if len(f)]
        pools: dict[tuple[int, int], tuple[np.ndarray, dict[int, tuple[int, int]],
                                           np.ndarray]] = {}
        out: list[float] = []
        self.skipped_sauc_no_others = 0
        for i in with_fix:
            shape = self._shapes[i]
            if shape not in pools:  # every image's fixations mapped to this shape, in order
                parts, spans, start = [], {}, 0
                for j in with_fix:
                    r = rescale_points(self._fix[j], self._shapes[j], shape)
                    parts.append(r[:, 0] * shape[1] + r[:, 1])
                    spans[j] = (start, start + len(r))
                    start += len(r)
                pool = np.concatenate(parts)
                pools[shape] = (pool, spans, np.bincount(pool, minlength=shape[0] * shape[1]))
            pool, spans, counts = pools[shape]
            lo, hi = spans[i]
            n_others = pool.size - (hi - lo)
            if n_others == 0:
                self.skipped_sauc_no_others += 1
                continue
            s = minmax(self._score_map(self._preds[i], shape))
            flat = s.ravel()
            own = self._fix[i][:, 0] * shape[1] + self._fix[i][:, 1]
            if self.auc_splits is None:
                # every other fixation a negative: pixel values weighted by how often the other
                # images fixate them (the same curve as the pooled values, O(H W log H W))
                weight = counts.astype(np.float64)
                weight[own] -= 1.0  # image i's own span of the pool is exactly ``own``
                keep = weight > 0
                pos, neg = flat[own], flat[keep]
                out.append(roc_area(pos, neg, np.unique(np.concatenate([pos, neg]))[::-1],
                                     weight[keep]))
                continue

            def values(ix: np.ndarray, flat=flat, pool=pool, lo=lo, hi=hi) -> np.ndarray:
                # index ix into the pool with image i's own span [lo, hi) cut out
                return flat[pool[np.where(ix >= lo, ix + (hi - lo), ix)]]

            out.append(sauc_from_pool(flat[own], n_others, values, self.auc_splits,
                                       self.step, [self.seed, 1, i]))
        return out

    def compute(self) -> dict[str, float]:
        """Means over the images added (see the class docstring)."""
        if self.n_images == 0:
            raise ValueError("SaliencyMeter.compute: no image was added")
        out = {k: float(np.mean(v)) for k, v in self.scores.items() if v}
        if self.sauc:
            sauc = self._sauc_scores()
            if sauc:
                out["sauc"] = float(np.mean(sauc))
        return out
