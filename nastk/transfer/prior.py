"""A prior over a new task from earlier tasks' results, weighted by measured agreement.

Each earlier task (:class:`~nastk.transfer.sources.SourceTask`) becomes a *source model*: an
architecture it evaluated gets the normal quantile of its rank among that task's results
(``z``, so tasks with different metrics and scales mix); any other architecture gets a ridge
regression's prediction from the space's encoding (:meth:`SearchSpace.encode`), fitted on
those ``z``. Ranks, not values, carry over: what transfers between tasks is which
architectures are better, not by how much.

The weights are measured, never assumed. Until the new task has ``min_results`` results every
weight is 0 and the prior says nothing (the strategy runs as it would cold). From then on, for
each source, Kendall's tau between its model's values and the new task's scores over the
results so far, less the standard deviation tau has on that many results when the rankings are
unrelated (``sqrt(2 (2n + 5) / (9 n (n - 1)))``), floored at 0, is its weight. A source whose
ranking disagrees with the new task (or agrees only as much as chance would) gets weight 0, so
an unrelated or anti-correlated earlier task stops steering the search after the first
``min_results`` results. The prior of an architecture is the weighted mean of the sources'
values; it exists while some weight is positive.

Strategies use it in two ways (:meth:`TransferPrior.best_unseen`, :meth:`TransferPrior.values`):
evolution fills its initial population, and ``bo`` and ``predictor_guided`` their warm-up,
with the earlier tasks' best architectures by the current prior, instead of uniform samples;
``bo`` and ``predictor_guided`` then model the new task's scores as ``beta * prior + residual``
(``beta`` fitted to the results so far, at least 0). Everything is a function of the sources
and of the results the strategy was told, so a resumed search makes the same proposals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri
from scipy.stats import kendalltau, rankdata
from sklearn.linear_model import Ridge

from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.transfer.sources import SourceTask, describe_sources

__all__ = ["TransferPrior", "fit_slope", "null_tau_std"]


def null_tau_std(n: int) -> float:
    """The standard deviation of Kendall's tau between ``n`` pairs of unrelated rankings."""
    return math.sqrt(2.0 * (2 * n + 5) / (9.0 * n * (n - 1)))


def fit_slope(prior: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of ``y`` on ``prior`` (both centred), at least 0."""
    p = prior - prior.mean()
    denom = float(p @ p)
    if denom <= 1e-12:
        return 0.0
    return max(0.0, float(p @ (y - y.mean())) / denom)


class _SourceModel:
    """One earlier task's ``z`` values: looked up where it evaluated the architecture, a ridge
    regression's prediction elsewhere."""

    def __init__(self, space: SearchSpace, source: SourceTask) -> None:
        self.space = space
        n = len(source.scores)
        z = ndtri((rankdata(source.scores) - 0.5) / n) if n > 1 else np.zeros(n)
        self.known = {a.key: float(v) for a, v in zip(source.archs, z, strict=True)}
        self.ridge: Ridge | None = None
        if n > 1:
            x = np.stack([space.encode(a) for a in source.archs]).astype(np.float64)
            self.ridge = Ridge(alpha=1.0).fit(x, z)

    def __call__(self, archs: Sequence[Architecture]) -> np.ndarray:
        out = np.zeros(len(archs))
        unknown = []
        for i, arch in enumerate(archs):
            v = self.known.get(arch.key)
            if v is None:
                unknown.append(i)
            else:
                out[i] = v
        if unknown and self.ridge is not None:
            x = np.stack([self.space.encode(archs[i]) for i in unknown]).astype(np.float64)
            out[unknown] = self.ridge.predict(x)
        return out


class TransferPrior:
    """The earlier tasks' prior over a new task (module docstring)."""

    def __init__(self, space: SearchSpace, sources: Sequence[SourceTask],
                 min_results: int = 5) -> None:
        if not sources:
            raise ValueError("a warm start needs at least one earlier task")
        if min_results < 3:
            raise ValueError(f"min_results must be >= 3, got {min_results}")
        self.space = space
        self.sources = list(sources)
        self.min_results = int(min_results)
        self._models = [_SourceModel(space, s) for s in self.sources]
        union: dict[str, Architecture] = {}
        for s in self.sources:
            for a in s.archs:
                union.setdefault(a.key, a)
        #: every architecture an earlier task evaluated (sorted by key: ties break the same
        #: way in every process)
        self.candidates = [union[k] for k in sorted(union)]
        self._candidate_values = np.stack([m(self.candidates) for m in self._models], axis=1)
        self._cache: dict[str, np.ndarray] = {}
        self._validity: dict[str, bool] = {}

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def describe(self) -> dict[str, object]:
        """The sources, as the run's store and report record them."""
        return describe_sources(self.sources, self.min_results)

    # -- the sources' values ----------------------------------------------------------------------
    def source_values(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Every source model's ``z`` for each architecture: shape (len(archs), sources)."""
        rows = [self._cache.get(a.key) for a in archs]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            new = np.stack([m([archs[i] for i in todo]) for m in self._models], axis=1)
            for j, i in enumerate(todo):
                rows[i] = self._cache[archs[i].key] = new[j]
        if not rows:
            return np.zeros((0, len(self._models)))
        return np.stack(rows)  # type: ignore[arg-type]

    # -- the weights ------------------------------------------------------------------------------
    def weights(self, observed: Sequence[tuple[Architecture, float]]) -> np.ndarray:
        """Each source's weight after the new task's results ``observed`` (module docstring)."""
        n = len(observed)
        w = np.zeros(len(self._models))
        if n < self.min_results:
            return w
        y = np.array([s for _, s in observed], dtype=np.float64)
        if np.ptp(y) == 0:
            return w
        values = self.source_values([a for a, _ in observed])
        floor = null_tau_std(n)
        for j in range(len(self._models)):
            col = values[:, j]
            if np.ptp(col) == 0:
                continue
            tau = kendalltau(col, y).statistic
            if tau is not None and math.isfinite(tau):
                w[j] = max(0.0, float(tau) - floor)
        return w

    def values(self, archs: Sequence[Architecture], weights: np.ndarray) -> np.ndarray | None:
        """The prior of each architecture under ``weights`` (``None`` when every weight is 0)."""
        total = float(weights.sum())
        if total <= 0.0:
            return None
        return self.source_values(archs) @ (weights / total)

    def residual(self, observed: Sequence[tuple[Architecture, float]], y: np.ndarray
                 ) -> tuple[float, np.ndarray | None, np.ndarray]:
        """How a model of the new task's scores uses the prior: ``(beta, weights, y - beta *
        prior)`` with ``beta`` the least-squares slope of ``y`` (the model's scores of the
        ``observed`` architectures) on their prior, at least 0; ``(0, None, y)`` while the
        prior says nothing or does not predict ``y``."""
        w = self.weights(observed)
        prior = self.values([a for a, _ in observed], w)
        if prior is None:
            return 0.0, None, y
        beta = fit_slope(prior, y)
        if beta <= 0.0:
            return 0.0, None, y
        return beta, w, y - beta * prior

    def best_unseen(self, observed: Sequence[tuple[Architecture, float]],
                    seen: set[str]) -> Architecture | None:
        """The earlier tasks' best architecture by the prior after ``observed`` that is not in
        ``seen`` and is valid in the space; ``None`` while the prior says nothing (or every
        candidate has been seen)."""
        found = self.top_unseen(self.weights(observed), seen, 1)
        return found[0] if found else None

    def top_unseen(self, weights: np.ndarray, seen: set[str], k: int) -> list[Architecture]:
        """The ``k`` best architectures the earlier tasks evaluated, by the prior under
        ``weights``, that are not in ``seen`` and are valid in the space (none while every
        weight is 0)."""
        total = float(weights.sum())
        if total <= 0.0 or k <= 0:
            return []
        value = self._candidate_values @ (weights / total)
        out: list[Architecture] = []
        for i in np.argsort(-value, kind="stable"):
            arch = self.candidates[int(i)]
            if arch.key not in seen and self._valid(arch):
                out.append(arch)
                if len(out) == k:
                    break
        return out

    def _valid(self, arch: Architecture) -> bool:
        """Whether the space (perhaps limited by cost constraints) accepts ``arch``."""
        ok = self._validity.get(arch.key)
        if ok is None:
            ok = self._validity[arch.key] = self.space.is_valid(arch)
        return ok

    def weight_curves(self, observed: Sequence[tuple[Architecture, float]]
                      ) -> dict[str, list[float]]:
        """Each source's weight after each of the new task's first 200 results (the report's
        curves)."""
        if not observed:
            return {}
        steps = [self.weights(observed[:n]) for n in range(1, min(len(observed), 200) + 1)]
        return {f"warm-start weight of {name} per result": [float(w[j]) for w in steps]
                for j, name in enumerate(self.names)}
