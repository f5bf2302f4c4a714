"""NSGA-II, Deb et al. 2002, over the objective's metric and costs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core.objective import Objective
from nastk.core.pareto import crowding_distance, non_dominated_sort
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy


class NSGA2Options(BaseModel):
    """Options of :class:`NSGA2`."""

    model_config = ConfigDict(extra="forbid")

    population: int = Field(default=20, ge=2,
                            description="parents kept by environmental selection, and the "
                                        "number of successful offspring per generation")
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0,
                                  description="probability that a child is the uniform "
                                              "crossover of two tournament winners")
    mutation_prob: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="probability that each dimension is mutated (default 1 / #dimensions; at "
                    "least one dimension always changes)")
    max_tries: int = Field(default=20, ge=1,
                           description="children drawn per proposal to find one not seen "
                                       "before (a duplicate is returned after that many)")


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of types ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _result_state(result: Result) -> dict[str, Any]:
    d = result.to_dict()
    if not _plain(d["info"]):
        d["info"] = {k: v for k, v in d["info"].items() if _plain(v)}
    return d


class _Member:
    """A told successful result with its objective vector (larger is better everywhere)."""

    __slots__ = ("arch", "crowd", "rank", "result", "vec")

    def __init__(self, arch: Architecture, result: Result, vec: tuple[float, ...]) -> None:
        self.arch, self.result, self.vec = arch, result, vec
        self.rank, self.crowd = 0, math.inf


class NSGA2(Strategy):
    """NSGA-II multi-objective evolution over the metric and the costs (Deb et al. 2002).

    Objectives are :meth:`Objective.vector` (score, -cost1, ...); with no costs it is a plain
    generational GA. The first generation is random. Later proposals are children of two binary
    tournament winners (lower non-domination rank, then larger crowding distance), crossed over
    with ``crossover_prob`` and mutated. Once ``population`` successful offspring have been told,
    parents + offspring (duplicates removed) are cut back to ``population`` by rank and crowding.
    :meth:`front` gives the non-dominated set of everything told so far.
    """

    Options = NSGA2Options

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        self.parents: list[_Member] = []
        self.offspring: list[_Member] = []
        self.generation = 0
        self._archive: dict[str, _Member] = {}  # every told successful result, by key
        self._proposed: set[str] = set()

    # -- ask ----------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        for _ in range(n):
            arch = self._child()
            for _ in range(self.options.max_tries - 1):
                if arch.key not in self._proposed and arch.key not in self._archive:
                    break
                arch = self._child()
            self._proposed.add(arch.key)
            out.append(arch)
        return out

    def _child(self) -> Architecture:
        if not self.parents:
            return self.space.sample(self.rng)
        a = self._tournament()
        if self.rng.random() < self.options.crossover_prob:
            b = self._tournament()
            a = self.space.crossover(a, b, self.rng)
        return self.space.mutate(a, self.rng, self.options.mutation_prob)

    def _tournament(self) -> Architecture:
        i, j = (int(k) for k in self.rng.integers(len(self.parents), size=2))
        p, q = self.parents[i], self.parents[j]
        if (p.rank, -p.crowd) <= (q.rank, -q.crowd):
            return p.arch
        return q.arch

    # -- tell ---------------------------------------------------------------------------------
    def tell(self, arch: Architecture, result: Result) -> None:
        vec = self.objective.vector(result)
        if vec is None:
            return
        member = _Member(arch, result, tuple(float(v) for v in vec))
        self._archive[arch.key] = member
        self.offspring.append(member)
        if len(self.offspring) >= self.options.population:
            self._select()

    def _select(self) -> None:
        """Environmental selection of parents + offspring down to ``population``."""
        pool: dict[str, _Member] = {}
        for m in [*self.parents, *self.offspring]:
            pool[m.arch.key] = m  # a re-told architecture keeps its latest result
        members = list(pool.values())
        self.offspring = []
        self.generation += 1
        survivors: list[_Member] = []
        fronts = non_dominated_sort(np.array([m.vec for m in members]))
        for rank, front in enumerate(fronts):
            crowd = crowding_distance(np.array([members[i].vec for i in front]))
            for i, c in zip(front, crowd, strict=True):
                members[i].rank, members[i].crowd = rank, float(c)
            ordered = sorted(front, key=lambda i: -members[i].crowd)  # stable: keeps ties' order
            room = self.options.population - len(survivors)
            survivors.extend(members[i] for i in ordered[:room])
            if len(survivors) >= self.options.population:
                break
        self.parents = survivors

    # -- results ------------------------------------------------------------------------------
    def front(self) -> list[tuple[Architecture, Result]]:
        """The non-dominated (architecture, result) pairs among all successful results told."""
        members = list(self._archive.values())
        if not members:
            return []
        first = non_dominated_sort(np.array([m.vec for m in members]))[0]
        return [(members[i].arch, members[i].result) for i in sorted(first)]

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def pack(m: _Member, ranked: bool = True) -> dict[str, Any]:
            d = {"arch": m.arch.to_json(), "result": _result_state(m.result), "vec": list(m.vec)}
            return {**d, "rank": m.rank, "crowd": m.crowd} if ranked else d

        return {**super().state_dict(),
                "generation": self.generation,
                "parents": [pack(m) for m in self.parents],
                "offspring": [pack(m) for m in self.offspring],
                "archive": [pack(m, ranked=False) for m in self._archive.values()],
                "proposed": sorted(self._proposed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)

        def unpack(d: dict[str, Any]) -> _Member:
            m = _Member(Architecture.from_json(d["arch"]), Result.from_dict(d["result"]),
                        tuple(float(v) for v in d["vec"]))
            if "rank" in d:
                m.rank, m.crowd = int(d["rank"]), float(d["crowd"])
            return m

        self.generation = int(state["generation"])
        self.parents = [unpack(d) for d in state["parents"]]
        self.offspring = [unpack(d) for d in state["offspring"]]
        self._archive = {m.arch.key: m for m in (unpack(d) for d in state["archive"])}
        self._proposed = set(state["proposed"])
