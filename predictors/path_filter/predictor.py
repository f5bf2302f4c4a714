"""The path filter itself: an MLP ranking architectures within cost buckets (pairwise loss),
its calibration, pruning and persistence. See :mod:`nastk.predictors.path_filter`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.cpus import THREADS_HELP, Threads
from nastk.core.weights import load_file, save_state
from nastk.nn.supernet import SupernetModel
from nastk.prediction.base import ArchLike, NotFittedError, Predictor, PredictorError, check_lengths
from nastk.prediction.path_filter.contract import CostFn
from nastk.prediction.path_filter.contract import PathFilter as PathFilterContract
from nastk.predictors.buckets import bucket_index, kept_count, quantile_edges
from nastk.predictors.metrics import bucketed_kendall_tau
from nastk.predictors.mlp import build_mlp, torch_context
from nastk.predictors.path_filter.keep_rule import bucket_thresholds, check_keep_ratio
from nastk.predictors.path_filter.pruned_space import PrunedSpace
from nastk.predictors.path_filter.sampler import PrunedPhaseSampler, pruned_sampler_factory
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

STATE_FORMAT = "nastk.path_filter/1"

Cost = float | Mapping[str, float]


class PathFilterOptions(BaseModel):
    """Options of :class:`PathFilter`."""

    model_config = ConfigDict(extra="forbid")

    n_buckets: int = Field(5, ge=1, description="cost buckets, cut at cost quantiles of the "
                                                "training architectures")
    cost: str = Field("flops", description="which entry to read when a cost is a mapping "
                                           "(e.g. bench.costs(arch)): flops, params, "
                                           "latency_ms, ...")
    hidden: tuple[int, ...] = Field((64, 64), description="hidden layer widths")
    steps: int = Field(400, ge=1, description="optimizer steps")
    pairs_per_step: int = Field(4096, ge=1, description="same-bucket pairs drawn per step "
                                                        "(all of them when fewer)")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate (cosine-annealed)")
    weight_decay: float = Field(1e-3, ge=0)
    num_threads: Threads = Field(1, description="torch CPU threads while fitting and "
                                 "scoring (one: the filter's MLP is too small to share out); "
                                 + THREADS_HELP)


class PathFilter(Predictor, PathFilterContract):
    """DetOFA-style path filter: ranks architectures within cost buckets (pairwise loss).

    ``fit(archs, scores, costs)`` trains it; ``score``/``rank`` order architectures inside their
    cost bucket; ``prune`` keeps the predicted top fraction of every bucket of a candidate list
    or a search space. Costs are given explicitly (numbers, or mappings read at the ``cost``
    option) or come from ``cost_fn(arch)``.

    ``predict`` (the :class:`Predictor` interface) maps the ranking score onto the score scale
    with a per-bucket monotone affine calibration fitted on the training set, so predictions
    also compare across buckets; ``score`` is the raw network output, meaningful only within a
    bucket. There is no uncertainty estimate.
    """

    Options = PathFilterOptions
    uses_costs = True

    def __init__(self, space: SearchSpace, seed: int = 0, cost_fn: CostFn | None = None,
                 **options: Any) -> None:
        super().__init__(space, seed, **options)
        self.cost_fn = cost_fn
        self.edges = np.zeros(0)
        self.calibration = np.zeros((self.options.n_buckets, 2))
        self.history: list[float] = []

    @property
    def cost(self) -> str:
        """The cost the buckets are cut on (the ``cost`` option)."""
        return self.options.cost

    @property
    def n_buckets(self) -> int:
        """How many cost buckets it cuts (the ``n_buckets`` option)."""
        return self.options.n_buckets

    def require_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless the filter is fitted (or loaded)."""
        if not self._fitted:
            raise NotFittedError(f"{self.name} is not fitted; call fit(archs, scores, costs) "
                                 "first (or load a saved filter with PathFilter.load)")

    def _require_fitted(self) -> None:  # the Predictor base's hook
        self.require_fitted()

    # -- costs and buckets --------------------------------------------------------------------
    def cost_values(self, archs: Sequence[ArchLike],
                    costs: Sequence[Cost] | np.ndarray | None = None,
                    cost_fn: CostFn | None = None) -> np.ndarray:
        """Costs of ``archs`` as floats: from ``costs`` if given, else ``cost_fn`` (or the one
        given at construction). Mapping costs are read at the ``cost`` option."""
        archs = list(archs)
        if costs is None:
            fn = cost_fn or self.cost_fn
            if fn is None:
                raise PredictorError(
                    f"{self.name}: no costs for {len(archs)} architectures; pass costs=[...] "
                    "(one per architecture) or give the filter a cost_fn(arch) -> float")
            costs = [fn(a if isinstance(a, Architecture) else Architecture(a)) for a in archs]
        if isinstance(costs, np.ndarray):
            values = costs.astype(np.float64).reshape(-1)
        else:
            values = np.asarray([self._one_cost(c) for c in costs], dtype=np.float64)
        if values.size != len(archs):
            raise PredictorError(f"{self.name}: got {values.size} costs for {len(archs)} "
                                 "architectures; pass one cost per architecture")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise PredictorError(f"{self.name}: cost #{int(bad[0])} is {values[bad[0]]}; every "
                                 "architecture needs a finite cost")
        return values

    def _one_cost(self, c: Cost) -> float:
        if isinstance(c, Mapping):
            key = self.options.cost
            if key not in c:
                raise PredictorError(f"{self.name}: cost {key!r} not in {sorted(c)}; set the "
                                     f"option cost to one of them")
            return float(c[key])
        return float(c)

    def bucket_of(self, costs: Sequence[Cost] | np.ndarray | Cost) -> np.ndarray:
        """Cost bucket (0 = cheapest) of each cost, with the edges fitted on the training set.
        Costs outside the training range fall into the first or last bucket."""
        self.require_fitted()
        if isinstance(costs, (int, float, Mapping)):
            costs = [costs]
        values = (np.asarray(costs, dtype=np.float64).reshape(-1) if isinstance(costs, np.ndarray)
                  else np.asarray([self._one_cost(c) for c in costs], dtype=np.float64))
        return bucket_index(values, self.edges)

    def encode_with_costs(self, archs: Sequence[ArchLike],
                          costs: Sequence[Cost] | np.ndarray | None = None) -> np.ndarray:
        """The network's input: each encoding followed by the one-hot of its cost bucket."""
        archs = list(archs)
        buckets = bucket_index(self.cost_values(archs, costs), self.edges)
        one_hot = np.zeros((len(archs), self.options.n_buckets), dtype=np.float32)
        one_hot[np.arange(len(archs)), buckets] = 1.0
        return np.concatenate([self.encode(archs), one_hot], axis=1)

    # -- training -----------------------------------------------------------------------------
    def fit(self, archs: Sequence[ArchLike], scores: Sequence[float] | np.ndarray,
            costs: Sequence[Cost] | np.ndarray | None = None) -> PathFilter:
        """Cut the cost buckets at the quantiles of the training costs and train the ranking
        MLP on same-bucket pairs; returns ``self``."""
        archs = list(archs)
        check_lengths(self.name, len(archs), scores)
        values = self.cost_values(archs, costs)
        self.edges = quantile_edges(values, self.options.n_buckets)
        return self.fit_encoded(self.encode_with_costs(archs, values), scores)

    def _buckets_of_encoded(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(X[:, -self.options.n_buckets:], axis=1)

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        o = self.options
        buckets = self._buckets_of_encoded(X)
        first, second = [], []
        for b in np.unique(buckets):
            idx = np.flatnonzero(buckets == b)
            i, j = np.triu_indices(idx.size, 1)
            i, j = idx[i], idx[j]
            differ = z[i] != z[j]
            i, j = i[differ], j[differ]
            better_first = z[i] > z[j]
            first.append(np.where(better_first, i, j))  # the better of each pair first
            second.append(np.where(better_first, j, i))
        win = np.concatenate(first) if first else np.zeros(0, dtype=np.int64)
        lose = np.concatenate(second) if second else np.zeros(0, dtype=np.int64)
        if win.size == 0:
            raise PredictorError(
                f"{self.name}.fit: no two architectures with different scores share a cost "
                f"bucket ({X.shape[0]} architectures, {o.n_buckets} buckets); fit on more "
                "architectures or lower n_buckets")
        rng = np.random.default_rng(self.seed)
        self.history = []
        with torch_context(self.seed, o.num_threads):
            self.net = build_mlp(X.shape[1], o.hidden)
            opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.steps)
            xt = torch.from_numpy(X)
            win_t, lose_t = torch.from_numpy(win), torch.from_numpy(lose)
            self.net.train()
            for _ in range(o.steps):
                if win.size > o.pairs_per_step:
                    sel = torch.from_numpy(rng.integers(0, win.size, size=o.pairs_per_step))
                    w, lo = win_t[sel], lose_t[sel]
                else:
                    w, lo = win_t, lose_t
                s = self.net(xt).squeeze(-1)
                loss = nn.functional.softplus(s[lo] - s[w]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                self.history.append(float(loss.detach()))
            self.net.eval()
        self.calibration = self._calibrate(self._raw(X), z, buckets)

    def _calibrate(self, s: np.ndarray, z: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Per bucket ``(slope >= 0, intercept)`` of a least-squares map from raw score to
        standardized target; buckets with fewer than 2 architectures (or constant scores) use
        the pooled within-bucket slope."""
        nb = self.options.n_buckets
        cov = np.zeros(nb)
        var = np.zeros(nb)
        for b in range(nb):
            m = buckets == b
            if m.sum() >= 2:
                sc, zc = s[m] - s[m].mean(), z[m] - z[m].mean()
                cov[b], var[b] = float(sc @ zc), float(sc @ sc)
        pooled = max(cov.sum() / var.sum(), 0.0) if var.sum() > 0 else 0.0
        out = np.zeros((nb, 2))
        for b in range(nb):
            m = buckets == b
            slope = max(cov[b] / var[b], 0.0) if var[b] > 1e-12 else pooled
            if m.any():
                out[b] = slope, z[m].mean() - slope * s[m].mean()
            else:
                out[b] = slope, z.mean() - slope * s.mean()
        return out

    # -- scoring ------------------------------------------------------------------------------
    def _raw(self, X: np.ndarray) -> np.ndarray:
        with torch_context(self.seed, self.options.num_threads), torch.no_grad():
            return self.net(torch.from_numpy(np.ascontiguousarray(X))).squeeze(-1).double().numpy()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        cal = self.calibration[self._buckets_of_encoded(X)]
        return cal[:, 0] * self._raw(X) + cal[:, 1]

    def predict(self, archs: Sequence[ArchLike],
                costs: Sequence[Cost] | np.ndarray | None = None) -> np.ndarray:
        """Calibrated predicted scores (original scale); see the class docstring."""
        self.require_fitted()
        return self.predict_encoded(self.encode_with_costs(archs, costs))

    def predict_with_std(self, archs: Sequence[ArchLike],
                         costs: Sequence[Cost] | np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Not available: the path filter has no uncertainty estimate."""
        raise PredictorError(f"{self.name} has no uncertainty estimate; use 'ensemble' or 'gp' "
                             "for predict_with_std, or score()/predict() here")

    def score(self, archs: Sequence[ArchLike],
              costs: Sequence[Cost] | np.ndarray | None = None) -> np.ndarray:
        """Raw ranking scores (larger = predicted better); compare them only within a bucket."""
        self.require_fitted()
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        return self._raw(self._check_predict(self.encode_with_costs(archs, costs)))

    def scores_and_buckets(self, archs: Sequence[ArchLike],
                           costs: Sequence[Cost] | np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` and the cost bucket of each architecture."""
        self.require_fitted()
        archs = list(archs)
        values = self.cost_values(archs, costs)
        return self.score(archs, values), bucket_index(values, self.edges)

    def rank(self, archs: Sequence[ArchLike],
             costs: Sequence[Cost] | np.ndarray | None = None) -> np.ndarray:
        """Each architecture's rank inside its own cost bucket among ``archs`` (0 = predicted
        best of its bucket; ties go to the earlier architecture)."""
        s, buckets = self.scores_and_buckets(archs, costs)
        ranks = np.zeros(s.size, dtype=np.int64)
        for b in np.unique(buckets):
            idx = np.flatnonzero(buckets == b)
            order = idx[np.argsort(-s[idx], kind="stable")]
            ranks[order] = np.arange(idx.size)
        return ranks

    def thresholds(self, archs: Sequence[ArchLike], keep_ratio: float,
                   costs: Sequence[Cost] | np.ndarray | None = None) -> np.ndarray:
        """Per bucket, the lowest score kept when the top ``keep_ratio`` of ``archs`` in that
        bucket are kept (``-inf`` for buckets without any of ``archs``: nothing to judge by)."""
        check_keep_ratio(keep_ratio)
        s, buckets = self.scores_and_buckets(archs, costs)
        return bucket_thresholds(s, buckets, keep_ratio, self.n_buckets)

    # -- pruning ------------------------------------------------------------------------------
    def prune(self, candidates: SearchSpace | Sequence[ArchLike], keep_ratio: float,
              costs: Sequence[Cost] | np.ndarray | None = None,
              cost_fn: CostFn | None = None, n_samples: int = 2000,
              seed: int | None = None) -> list[Architecture] | PrunedSpace:
        """Keep the predicted top ``keep_ratio`` of every cost bucket.

        * A list of candidates: returns the kept ones in their original order, exactly
          ``ceil(keep_ratio * n_b)`` (at least 1) of each bucket's ``n_b`` candidates.
        * A search space: returns a :class:`PrunedSpace` whose per-bucket thresholds are
          estimated from ``n_samples`` samples of the space (``seed`` defaults to the
          filter's); costs come from ``cost_fn`` (or the filter's own).
        """
        check_keep_ratio(keep_ratio)
        if isinstance(candidates, SearchSpace):
            return PrunedSpace(candidates, self, keep_ratio, cost_fn=cost_fn,
                               n_samples=n_samples, seed=self.seed if seed is None else seed)
        archs = [a if isinstance(a, Architecture) else Architecture(a) for a in candidates]
        if not archs:
            return []
        s, buckets = self.scores_and_buckets(archs, self.cost_values(archs, costs, cost_fn))
        keep = np.zeros(len(archs), dtype=bool)
        for b in np.unique(buckets):
            idx = np.flatnonzero(buckets == b)
            order = idx[np.argsort(-s[idx], kind="stable")]
            keep[order[:kept_count(idx.size, keep_ratio)]] = True
        return [a for a, k in zip(archs, keep, strict=True) if k]

    def within_bucket_tau(self, archs: Sequence[ArchLike], scores: Sequence[float] | np.ndarray,
                          costs: Sequence[Cost] | np.ndarray | None = None) -> float:
        """Kendall tau between ``scores`` and this filter's ranking inside its own cost buckets
        (weighted by bucket size): how well it would prune these architectures."""
        values = self.cost_values(list(archs), costs)
        return bucketed_kendall_tau(scores, self.score(archs, values), values,
                                    buckets=self.bucket_of(values))

    def supernet_sampler_factory(self, keep_ratio: float, n_samples: int = 1000, seed: int = 0,
                                 cost_fn: CostFn | None = None
                                 ) -> Callable[[SupernetModel, list[str] | None],
                                               PrunedPhaseSampler]:
        """:func:`pruned_sampler_factory` for this filter (what `nastk supernet train` uses for
        a config's ``path_filter``)."""
        return pruned_sampler_factory(self, cost_fn, keep_ratio, n_samples, seed)

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a fitted filter needs, as plain values and tensors (loads with
        ``torch.load(..., weights_only=True)``)."""
        self.require_fitted()
        return {
            "format": STATE_FORMAT,
            "options": json.dumps(self.options.model_dump()),
            "seed": self.seed,
            "space": self.space.name,
            "encoding_size": int(self.space.encoding_size()),
            "edges": torch.from_numpy(self.edges.astype(np.float64).copy()),
            "calibration": torch.from_numpy(self.calibration.astype(np.float64).copy()),
            "y_mean": self._y_mean,
            "y_scale": self._y_scale,
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; its options (which shape the network) replace this
        filter's. The space must encode to the same size as the one it was fitted on."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise PredictorError(f"{self.name}: not a path-filter state (format {found!r}, "
                                 f"expected {STATE_FORMAT!r}); save one with state_dict()")
        size = int(self.space.encoding_size())
        if int(state["encoding_size"]) != size:
            raise PredictorError(
                f"{self.name}: state was fitted on search space {state['space']!r} with "
                f"{state['encoding_size']}-long encodings, but {self.space.name!r} encodes to "
                f"{size}; load it with the space it was fitted on")
        self.options = self.Options(**json.loads(state["options"]))
        self.seed = int(state["seed"])
        self.edges = state["edges"].numpy().astype(np.float64)
        self.calibration = state["calibration"].numpy().astype(np.float64)
        self._y_mean = float(state["y_mean"])
        self._y_scale = float(state["y_scale"])
        self._n_features = size + self.options.n_buckets
        self.net = build_mlp(self._n_features, self.options.hidden)
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self._fitted = True

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically."""
        return save_state(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace,
             cost_fn: CostFn | None = None) -> PathFilter:
        """A filter restored from a file written by :meth:`save`."""
        state = load_file(path, "path filter", "; fit one and save it with PathFilter.save")
        filt = cls(space, cost_fn=cost_fn)
        filt.load_state_dict(state)
        return filt
