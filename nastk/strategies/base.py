"""The ask/tell strategy interface shared by every search strategy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.options import options_of
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

if TYPE_CHECKING:
    from nastk.transfer.prior import TransferPrior


def draw_unseen(space: SearchSpace, rng: np.random.Generator, seen: set[str],
                tries: int = 100) -> Architecture:
    """A uniform sample of ``space`` whose key is not in ``seen``, redrawn up to ``tries`` times
    (then a repeat is returned: the space is tiny or nearly exhausted); its key joins ``seen``."""
    arch = space.sample(rng)
    for _ in range(tries - 1):
        if arch.key not in seen:
            break
        arch = space.sample(rng)
    seen.add(arch.key)
    return arch


class NoOptions(BaseModel):
    """A strategy without options."""

    model_config = ConfigDict(extra="forbid")


class Strategy(ABC):
    """Proposes architectures (``ask``) and learns from their results (``tell``).

    A strategy knows the search space and the objective, never the task. ``tell`` may be called
    for architectures in any order and also for architectures the strategy did not just ask for
    (a cached result of a duplicate proposal, or a replay after resume). ``state_dict`` must
    return plain Python values and tensors only, so it saves with ``torch.save`` and loads with
    ``torch.load(..., weights_only=True)``; together with the seed it makes a search resumable.
    """

    #: pydantic model validating the strategy's options (subclasses replace it)
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: whether :meth:`use_warm_start` is implemented (``warm_start:`` in a config)
    supports_warm_start: ClassVar[bool] = False
    #: the earlier tasks' prior, when the search warm-starts (:mod:`nastk.transfer.prior`)
    warm_start: TransferPrior | None = None

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        self.space = space
        self.objective = objective
        self.seed = seed
        self.options = options_of(self.Options, options,
                                  what=f"strategy {type(self).__name__}")
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self, n: int = 1) -> list[Architecture]:
        """Propose ``n`` architectures to evaluate next."""

    @abstractmethod
    def tell(self, arch: Architecture, result: Result) -> None:
        """Report the result of evaluating ``arch``."""

    def tell_fidelity(self, arch: Architecture, resource: float, result: Result) -> None:
        """Report an intermediate result: ``arch`` evaluated up to ``resource`` (a scheduler's
        rung; see :mod:`nastk.scheduling`). Called for every rung a candidate reaches, the last
        one included, before :meth:`tell` gets the candidate's final result. Default: ignored
        (a multi-fidelity strategy such as ``bohb`` models them)."""
        return None

    def curves(self) -> dict[str, list[float]]:
        """Diagnostic curves of the strategy's own learning, by name (e.g. the RL controller's
        mean reward per policy update); the report plots them. Default: none."""
        return {}

    def use_warm_start(self, prior: TransferPrior) -> None:
        """Start from earlier tasks' results (before the first ask). Strategies that support
        it set :attr:`supports_warm_start`; the others refuse."""
        if not self.supports_warm_start:
            raise ConfigError(f"strategy {type(self).__name__} does not warm-start; strategies "
                              "that do set supports_warm_start (evolution, bo, "
                              "predictor_guided)")
        self.warm_start = prior

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this strategy is."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
