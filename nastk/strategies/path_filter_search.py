"""Search inside the part of a space that a path filter keeps (DetOFA-style pruning)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.core.loading import load_object
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.core.streams import Stream
from nastk.prediction.path_filter import (
    CostFn,
    PathFilter,
    filter_options,
    make_path_filter,
    prune_after_warmup,
)
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen


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
        return make_path_filter(filter_options(o.filter_options, o.cost, o.n_buckets),
                                self.space, seed=self.seed, cost_fn=self._cost_fn,
                                where="strategy.options.filter_options")

    def _n_scored(self) -> int:
        return sum(1 for _, r in self._warm if self.objective.score(r) is not None)

    def _prune(self) -> None:
        o = self.options
        self.path_filter, self.pruned = prune_after_warmup(
            self.space, self._warm, self.objective, cost=o.cost, n_buckets=o.n_buckets,
            options=o.filter_options, cost_fn=self._cost_fn, keep_ratio=o.keep_ratio,
            n_samples=o.n_samples, seed=self.seed, where="strategy.options")
        self.inner = registry.instantiate(registry.STRATEGIES, o.inner, o.inner_options,
                                          self.pruned, self.objective,
                                          seed=Stream.INNER_STRATEGY.seed(self.seed),
                                          where="strategy.options.inner_options")
        for arch, result in self._warm:
            self.inner.tell(arch, result)

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
