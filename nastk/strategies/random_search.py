"""Random search: the baseline every other strategy has to beat."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy


class RandomSearchOptions(BaseModel):
    """Options of :class:`RandomSearch`."""

    model_config = ConfigDict(extra="forbid")

    max_tries: int = Field(
        default=100, ge=1,
        description="draws per proposal to find an architecture not proposed or told before; "
                    "after that many duplicates (a tiny or exhausted space) a duplicate is "
                    "returned")


class RandomSearch(Strategy):
    """Uniform random sampling of the search space, never repeating an architecture it can avoid.

    Every proposal is a fresh uniform draw (``space.sample``); architectures already proposed or
    told are redrawn up to ``max_tries`` times, so small spaces are not re-evaluated until they
    are nearly exhausted.
    """

    Options = RandomSearchOptions

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        self._seen: set[str] = set()
        self._order: list[str] = []  # insertion order of _seen, for a stable state_dict

    def _remember(self, arch: Architecture) -> None:
        if arch.key not in self._seen:
            self._seen.add(arch.key)
            self._order.append(arch.key)

    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        for _ in range(n):
            arch = self.space.sample(self.rng)
            for _ in range(self.options.max_tries - 1):
                if arch.key not in self._seen:
                    break
                arch = self.space.sample(self.rng)
            self._remember(arch)
            out.append(arch)
        return out

    def tell(self, arch: Architecture, result: Result) -> None:
        self._remember(arch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": list(self._order)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._order = list(state["seen"])
        self._seen = set(self._order)
