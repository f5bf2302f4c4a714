"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search"."""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen


class EvolutionOptions(BaseModel):
    """Options of :class:`RegularizedEvolution`."""

    model_config = ConfigDict(extra="forbid")

    population: int = Field(default=20, ge=2,
                            description="number of most recent successful results kept alive")
    sample_size: int = Field(default=5, ge=1,
                             description="tournament size: members drawn to pick each parent")
    mutation_prob: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="probability that each dimension is mutated (default 1 / #dimensions; at "
                    "least one dimension always changes)")
    crossover_prob: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="probability that a child is the uniform crossover of two tournament "
                    "winners (then mutated) instead of a mutated copy of one")


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019): mutate tournament winners, retire the oldest member.

    Until ``population`` successful results have been told, proposals are uniform random samples
    (not repeating earlier proposals when avoidable). Afterwards each proposal mutates (and with
    ``crossover_prob`` first crosses over) the best of ``sample_size`` random population members.
    Every successful result joins the population and pushes its oldest member out; failed
    results never join. Results may arrive in any order and for architectures never asked for.

    Warm-started (:meth:`use_warm_start`), the initial population is the earlier tasks' best
    architectures by their prior (:mod:`nastk.transfer.prior`) instead of uniform samples, as
    soon as that prior has measured weights (after ``min_results`` results; a random sample
    while it has none).
    """

    Options = EvolutionOptions
    supports_warm_start = True

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        # (architecture, score), oldest first
        self.population: deque[tuple[Architecture, float]] = deque()
        self._proposed: set[str] = set()  # random proposals of the warm-up phase
        #: the first ``population`` successful results, in order (kept only when warm-started:
        #: the prior's weights while the initial population fills)
        self._observed: list[tuple[Architecture, float]] = []

    # -- ask / tell -------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        if len(self.population) < self.options.population:
            if self.warm_start is not None:
                arch = self.warm_start.best_unseen(self._observed, self._proposed)
                if arch is not None:
                    self._proposed.add(arch.key)
                    return arch
            return draw_unseen(self.space, self.rng, self._proposed)
        parent = self._tournament()
        if self.options.crossover_prob > 0 and self.rng.random() < self.options.crossover_prob:
            other = self._tournament()
            parent = self.space.crossover(parent, other, self.rng)
        return self.space.mutate(parent, self.rng, self.options.mutation_prob)

    def _tournament(self) -> Architecture:
        k = min(self.options.sample_size, len(self.population))
        idx = self.rng.choice(len(self.population), size=k, replace=False)
        best = max(idx, key=lambda i: (self.population[i][1], -i))  # ties: the oldest
        return self.population[int(best)][0]

    def tell(self, arch: Architecture, result: Result) -> None:
        score = self.objective.score(result)
        if score is None:
            return
        self.population.append((arch, float(score)))
        if self.warm_start is not None and len(self._observed) < self.options.population:
            self._observed.append((arch, float(score)))  # the initial population's results
        while len(self.population) > self.options.population:
            self.population.popleft()

    def curves(self) -> dict[str, list[float]]:
        if self.warm_start is None:
            return {}
        return self.warm_start.weight_curves(self._observed)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(),
                 "population": [(a.to_json(), s) for a, s in self.population],
                 "proposed": sorted(self._proposed)}
        if self.warm_start is not None:
            state["observed"] = [(a.to_json(), s) for a, s in self._observed]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque((Architecture.from_json(a), float(s))
                                for a, s in state["population"])
        self._proposed = set(state["proposed"])
        self._observed = [(Architecture.from_json(a), float(s))
                          for a, s in state.get("observed", [])]
