"""Search inside the part of a space that a path filter keeps (DetOFA-style pruning)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.core.loading import load_object
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.core.streams import Stream
from nastk.prediction.path_filter import CostFn, PathFilter, make_path_filter
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen

#: relative disagreement allowed between evaluated costs and the cost function's
COST_TOLERANCE = 0.05


class PathFilterSearchOptions(BaseModel):
    """Options of :class:`PathFilterSearch`."""

    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(30, ge=4, description="uniformly random evaluations that train the "
                                                "path filter")
    keep_ratio: float = Field(0.25, gt=0.0, le=1.0,
                              description="fraction of every cost bucket kept after pruning")
    cost: str = Field("flops", description="cost that defines the buckets (a key of the "
                                           "results' costs and of cost_fn's mapping)")
    cost_fn: str | None = Field(
        None, description="module:attr of a function arch -> cost (a number or a mapping "
                          "holding `cost`) for architectures not evaluated yet; default: the "
                          "space's own `arch_costs` method when it has one")
    n_buckets: int = Field(5, ge=1, description="cost buckets of the filter")
    n_samples: int = Field(2000, ge=10, description="space samples that set each bucket's "
                                                     "keep threshold")
    filter_options: dict[str, Any] = Field(default_factory=dict,
                                           description="other options of the path_filter "
                                                       "predictor")
    inner: str = Field("evolution", description="registered strategy run in the pruned space")
    inner_options: dict[str, Any] = Field(default_factory=dict)


class PathFilterSearch(Strategy):
    """Random warm-up, then a path filter prunes each cost bucket and the inner strategy searches
    what is left.

    The first ``warmup`` proposals are uniform random samples; their results (score and
    ``cost``) train the ``path_filter`` predictor, a ranking model of relative performance within
    cost buckets. The space is then pruned to the predicted top ``keep_ratio`` of every bucket
    (so cheap and expensive architectures both survive), and the ``inner`` strategy searches
    the pruned space, starting from the warm-up results. A resumed search refits the filter
    from the stored warm-up results with the same seed, so it prunes identically.
    """

    Options = PathFilterSearchOptions

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        o = self.options
        if o.cost_fn is not None:
            self._cost_fn: CostFn = load_object(o.cost_fn, "strategy.options.cost_fn")
        elif callable(getattr(space, "arch_costs", None)):
            self._cost_fn = space.arch_costs  # type: ignore[attr-defined]
        else:
            raise ConfigError(f"strategy.options.cost_fn: search space {space.name!r} cannot "
                              "tell an architecture's cost before it is evaluated; set cost_fn "
                              "to 'module:function' returning the cost of an architecture")
        self._warm: list[tuple[Architecture, Result]] = []
        self._seen: set[str] = set()
        self.inner: Strategy | None = None
        self.pruned: SearchSpace | None = None
        self._make_filter()  # check the options now

    def _make_filter(self) -> PathFilter:
        o = self.options
        opts = {**o.filter_options, "n_buckets": o.n_buckets, "cost": o.cost}
        return make_path_filter(opts, self.space, seed=self.seed, cost_fn=self._cost_fn,
                                where="strategy.options.filter_options")

    def _n_scored(self) -> int:
        return sum(1 for _, r in self._warm if self.objective.score(r) is not None)

    def _prune(self) -> None:
        o = self.options
        usable = [(a, r) for a, r in self._warm
                  if self.objective.score(r) is not None and r.value(o.cost) is not None]
        if len(usable) < 2:
            raise ConfigError(f"path-filter search: the warm-up results carry no {o.cost!r} "
                              f"cost (costs seen: {sorted(self._warm[-1][1].costs)}); set "
                              "strategy.options.cost to one the evaluator reports")
        filt = self._make_filter()
        self._check_cost_fn(filt, usable)
        filt.fit([a for a, _ in usable], [self.objective.score(r) for _, r in usable],
                 [r.value(o.cost) for _, r in usable])
        self.pruned = filt.prune(self.space, o.keep_ratio, cost_fn=self._cost_fn,
                                 n_samples=o.n_samples, seed=self.seed)
        self.path_filter = filt
        self.inner = registry.instantiate(registry.STRATEGIES, o.inner, o.inner_options,
                                          self.pruned, self.objective,
                                          seed=Stream.INNER_STRATEGY.seed(self.seed),
                                          where="strategy.options.inner_options")
        for arch, result in self._warm:
            self.inner.tell(arch, result)

    def _check_cost_fn(self, filt: PathFilter, usable: list[tuple[Architecture, Result]]) -> None:
        """The buckets are cut on the evaluated costs and the space is pruned on ``cost_fn``'s:
        the two must agree, or the thresholds land in the wrong place."""
        cost = self.options.cost
        told = np.asarray([r.value(cost) for _, r in usable], dtype=np.float64)
        fn = filt.cost_values([a for a, _ in usable], cost_fn=self._cost_fn)
        rel = np.abs(fn - told) / np.maximum(np.abs(told), 1e-12)
        worst = int(np.argmax(rel))
        if rel[worst] > COST_TOLERANCE:
            arch = usable[worst][0]
            raise ConfigError(
                f"path-filter search: for {self.space.render(arch) or arch.key} the evaluator "
                f"reported {cost} = {told[worst]:.6g} but the cost function says "
                f"{fn[worst]:.6g}; the filter would prune at the wrong costs. Make them count "
                "the same network (e.g. the space's task option) or set "
                "strategy.options.cost_fn")

    # -- ask / tell ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        for _ in range(n):
            if self.inner is None and self._n_scored() >= self.options.warmup:
                self._prune()
            if self.inner is not None:
                out.extend(self.inner.ask(1))
                continue
            out.append(draw_unseen(self.space, self.rng, self._seen))
        return out

    def tell(self, arch: Architecture, result: Result) -> None:
        self._seen.add(arch.key)
        if self.inner is None:
            self._warm.append((arch, result))
        else:
            self.inner.tell(arch, result)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": sorted(self._seen),
                "warm": [(a.to_json(), r.to_dict()) for a, r in self._warm],
                "inner": None if self.inner is None else self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._seen = set(state["seen"])
        self._warm = [(Architecture.from_json(a), Result.from_dict(r))
                      for a, r in state["warm"]]
        self.inner, self.pruned = None, None
        if state["inner"] is not None:
            self._prune()
            assert self.inner is not None
            self.inner.load_state_dict(state["inner"])
