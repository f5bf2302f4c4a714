"""A search space restricted to architectures whose costs lie in given ranges (e.g. a FLOPs
budget): every strategy searches inside it, because validation, sampling, mutation and
crossover all go through :meth:`CostRangeSpace.check_constraints`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from nastk.core.errors import InvalidArchitectureError, NastkError
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.space.wrapped import WrappedSpace

__all__ = ["CostRangeSpace"]

#: ``arch -> {cost: value}`` for the costs a range names (cached by the caller if expensive)
CostsFn = Callable[[Architecture], Mapping[str, float]]


class CostRangeSpace(WrappedSpace):
    """``space`` limited to ``ranges`` (``{cost: (low, high)}``, either bound may be None).

    Same dimensions as ``space``; an architecture outside a range is invalid (the error names
    the cost, its value and the range), so strategies stay inside. :meth:`sample` draws from
    ``space``'s own distribution until an architecture fits (``max_tries``, then an error that
    says the range may be empty). ``build``, ``render``, the canonical form, the encoding and
    every other attribute are ``space``'s (:class:`~nastk.space.wrapped.WrappedSpace`). Costs
    come from ``costs_fn`` and are cached per architecture.
    """

    def __init__(self, space: SearchSpace, costs_fn: CostsFn,
                 ranges: Mapping[str, tuple[float | None, float | None]],
                 max_tries: int = 2000) -> None:
        for name, (low, high) in ranges.items():
            if low is not None and high is not None and low > high:
                raise NastkError(f"constraints.{name}: the range [{low}, {high}] is empty")
        super().__init__(space)
        self.ranges = {k: (v[0], v[1]) for k, v in ranges.items()}
        self.costs_fn = costs_fn
        self.max_tries = int(max_tries)
        self._cache: dict[str, Mapping[str, float]] = {}

    def costs(self, arch: Architecture) -> Mapping[str, float]:
        if arch.key not in self._cache:
            self._cache[arch.key] = dict(self.costs_fn(arch))
        return self._cache[arch.key]

    def check_constraints(self, arch: Architecture) -> None:
        self.base.check_constraints(arch)
        costs = self.costs(arch)
        for name, (low, high) in self.ranges.items():
            value = float(costs[name])
            if (low is not None and value < low) or (high is not None and value > high):
                raise InvalidArchitectureError(
                    f"search space {self.name!r}: {name} {value:.6g} is outside the range "
                    f"[{low}, {high}] of `constraints`")

    def sample(self, rng: np.random.Generator) -> Architecture:
        seen: dict[str, list[float]] = {name: [] for name in self.ranges}
        for _ in range(self.max_tries):
            arch = self.base.sample(rng)
            if self.is_valid(arch):
                return arch
            costs = self._cache.get(arch.key)
            for name in seen:
                if costs is not None and name in costs:
                    seen[name].append(float(costs[name]))
        found = "; ".join(f"{name} of the samples ranged {min(v):.6g} to {max(v):.6g}"
                          for name, v in seen.items() if v)
        raise NastkError(f"constraints {self.ranges}: no architecture of {self.name!r} fitted "
                         f"in {self.max_tries} samples"
                         + (f" ({found})" if found else "")
                         + "; widen the range (the space's smallest and largest "
                         "architectures bound what is possible)")

    def check_feasible(self, seed: int = 0) -> None:
        """Raise the error of :meth:`sample` now, before a run starts, when no architecture
        fits the ranges (draws with its own generator: a strategy's draws are unchanged)."""
        self.sample(np.random.default_rng(seed))
