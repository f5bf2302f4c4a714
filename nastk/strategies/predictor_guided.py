"""Predictor-guided search: an inner strategy proposes many candidates, a performance predictor
trained on the results so far picks the ones worth evaluating."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.core.streams import Stream
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen


class PredictorGuidedOptions(BaseModel):
    """Options of :class:`PredictorGuided`."""

    model_config = ConfigDict(extra="forbid")

    predictor: str = Field("gp", description="registered predictor (`nastk list predictors`)")
    predictor_options: dict[str, Any] = Field(default_factory=dict)
    inner: str = Field("evolution", description="registered strategy that proposes candidates")
    inner_options: dict[str, Any] = Field(default_factory=dict)
    candidates: int = Field(100, ge=1, description="inner proposals scored per pick")
    warmup: int = Field(10, ge=2, description="uniformly random evaluations before the "
                                                "predictor is first fitted")
    refit_every: int = Field(1, ge=1, description="refit after at least this many new results")
    refit_growth: float = Field(1.05, ge=1.0, description="and only once the history has grown "
                                                           "by this factor since the last fit "
                                                           "(1.0: after every refit_every)")
    acquisition: Literal["mean", "ucb"] = Field(
        "ucb", description="'mean': the highest predicted score; 'ucb': mean + kappa * std "
                            "(needs a predictor with uncertainty, e.g. ensemble or gp)")
    kappa: float = Field(1.0, ge=0.0, description="exploration weight of 'ucb'")
    prior_candidates: int = Field(10, ge=0, description="warm-started: the earlier tasks' best "
                                  "unseen architectures added to each pool")


class PredictorGuided(Strategy):
    """Inner-strategy proposals filtered by a performance predictor, refitted as results arrive.

    The first ``warmup`` proposals are uniform random samples. Afterwards, each ask draws
    ``candidates`` proposals from the ``inner`` strategy (by default regularized evolution, so the
    pool is mutations of good architectures), drops those already evaluated or pending, and
    returns the ones the predictor scores highest. Every real result is told to the inner
    strategy too. The predictor is refitted from the whole history with a seed derived from the
    strategy's seed and the history's length, so a resumed search refits it identically and
    the state holds no model weights.

    Warm-started (:meth:`use_warm_start`, :mod:`nastk.transfer.prior`), the warm-up takes the
    earlier tasks' best architectures by their prior once it has measured weights (random
    samples before); afterwards the predictor learns the residual of the scores over
    ``beta * prior`` (``beta`` the least-squares slope on the results it is fitted to, at least
    0), candidates are scored by ``beta * prior`` plus its prediction, and the ``prior_candidates``
    best unseen architectures of the earlier tasks join each pool.
    """

    Options = PredictorGuidedOptions
    supports_warm_start = True

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        o = self.options
        self.inner: Strategy = registry.instantiate(
            registry.STRATEGIES, o.inner, o.inner_options, space, objective,
            seed=Stream.INNER_STRATEGY.seed(seed),
            where="strategy.options.inner_options")
        self._make_predictor(0)  # validates the predictor name and options now
        self._history: list[tuple[Architecture, float]] = []
        self._seen: set[str] = set()  # proposed or told
        self._fitted_at = -1  # history length the predictor was last fitted on
        self._predictor: Any = None
        self._predicted: dict[str, float] = {}
        self._errors: list[float] = []
        self._beta = 0.0  # warm start: the prior's slope in the last fit
        self._weights: np.ndarray | None = None  # warm start: the sources' weights then

    def _make_predictor(self, fit_seed: int) -> Any:
        o = self.options
        pred = registry.instantiate(registry.PREDICTORS, o.predictor, o.predictor_options,
                                    self.space, seed=fit_seed,
                                    where="strategy.options.predictor_options")
        if getattr(pred, "uses_costs", False):
            raise ConfigError(f"strategy.options.predictor: {o.predictor!r} ranks within cost "
                              "buckets and needs costs; predictor-guided search takes a plain "
                              "regressor (gbdt, random_forest, gp, ridge, mlp, ensemble)")
        if o.acquisition == "ucb" and not getattr(pred, "has_uncertainty", False):
            raise ConfigError(f"strategy.options.acquisition 'ucb' needs a predictor with "
                              f"uncertainty; {o.predictor!r} has none. Use predictor ensemble "
                              "or gp, or acquisition 'mean'")
        return pred

    # -- ask / tell ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        if len(self._history) < self.options.warmup:
            return [self._warmup_pick() for _ in range(n)]
        predictor = self._fitted()
        pool: dict[str, Architecture] = {}
        for arch in self.inner.ask(self.options.candidates):
            if arch.key not in self._seen:
                pool.setdefault(arch.key, arch)
        if self._beta > 0.0:
            assert self.warm_start is not None and self._weights is not None
            for arch in self.warm_start.top_unseen(self._weights, self._seen,
                                                   self.options.prior_candidates):
                pool.setdefault(arch.key, arch)
        while len(pool) < n:  # inner strategy stuck on known architectures
            arch = self._random()
            pool[arch.key] = arch
        cands = list(pool.values())
        if self.options.acquisition == "ucb":
            mean, std = predictor.predict_with_std(cands)
            value = np.asarray(mean) + self.options.kappa * np.asarray(std)
        else:
            value = np.asarray(predictor.predict(cands))
        if self._beta > 0.0:
            assert self.warm_start is not None and self._weights is not None
            prior = self.warm_start.values(cands, self._weights)
            assert prior is not None
            value = value + self._beta * prior
        order = np.argsort(-value, kind="stable")[:n]
        out = [cands[int(i)] for i in order]
        for i, arch in zip(order, out, strict=True):
            self._seen.add(arch.key)
            self._predicted[arch.key] = float(value[int(i)])
        return out

    def _random(self) -> Architecture:
        return draw_unseen(self.space, self.rng, self._seen)

    def _warmup_pick(self) -> Architecture:
        """A warm-up proposal: the earlier tasks' best unseen architecture while their prior
        has weights (warm-started), else a uniform sample."""
        if self.warm_start is not None:
            arch = self.warm_start.best_unseen(self._history, self._seen)
            if arch is not None:
                self._seen.add(arch.key)
                return arch
        return self._random()

    def _fitted(self) -> Any:
        n = len(self._history)
        if self._predictor is None and self._fitted_at >= 0:  # restored: rebuild the same fit
            self._fit(self._fitted_at)
        if self._predictor is None or n >= self._next_fit():
            self._fit(n)
        return self._predictor

    def _next_fit(self) -> int:
        """The history length at which the predictor is refitted next: ``refit_every`` more
        results, and ``refit_growth`` times as many (so refits do not dominate the cost)."""
        o = self.options
        return max(self._fitted_at + o.refit_every, math.ceil(self._fitted_at * o.refit_growth))

    def _fit(self, n: int) -> None:
        """Fit a fresh predictor on the first ``n`` results (seeded by ``n``)."""
        self._predictor = self._make_predictor(self.seed * 100_003 + n)
        archs = [a for a, _ in self._history[:n]]
        y = np.array([s for _, s in self._history[:n]], dtype=np.float64)
        self._beta, self._weights = 0.0, None
        if self.warm_start is not None:
            self._beta, self._weights, y = self.warm_start.residual(self._history[:n], y)
        self._predictor.fit(archs, [float(v) for v in y])
        self._fitted_at = n

    def tell(self, arch: Architecture, result: Result) -> None:
        self._seen.add(arch.key)
        self.inner.tell(arch, result)
        score = self.objective.score(result)
        if score is None:
            return
        self._history.append((arch, float(score)))
        predicted = self._predicted.pop(arch.key, None)
        if predicted is not None and self.options.acquisition == "mean":
            self._errors.append(abs(predicted - float(score)))

    def curves(self) -> dict[str, list[float]]:
        out = ({"|predicted - actual| score per guided evaluation": list(self._errors)}
               if self._errors else {})
        if self.warm_start is not None:
            out.update(self.warm_start.weight_curves(self._history))
        return out

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner": self.inner.state_dict(),
                "history": [(a.to_json(), s) for a, s in self._history],
                "seen": sorted(self._seen), "predicted": dict(self._predicted),
                "fitted_at": self._fitted_at,
                "errors": list(self._errors)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])
        self._history = [(Architecture.from_json(a), float(s)) for a, s in state["history"]]
        self._seen = set(state["seen"])
        self._predicted = {k: float(v) for k, v in state["predicted"].items()}
        self._errors = [float(e) for e in state["errors"]]
        self._fitted_at = int(state["fitted_at"])
        self._predictor = None  # refitted identically at the next ask
