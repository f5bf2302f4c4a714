"""Supernet training on kept paths only: :class:`PrunedPhaseSampler` and the trainer's
``sampler_factory``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nastk.core.errors import NastkError
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter.contract import CostFn
from nastk.predictors.path_filter.keep_rule import (
    BucketRanker,
    KeepRule,
    check_keep_ratio,
    resolve_cost_fn,
)
from nastk.space.architecture import Architecture
from nastk.training.supernet import PhaseSampler


class PrunedPhaseSampler(PhaseSampler):
    """A :class:`~nastk.training.supernet.PhaseSampler` whose random sub-networks are only
    paths the filter keeps.

    The keep thresholds are estimated per phase from ``n_samples`` draws of the phase's own
    distribution (unlocked dimensions random, the rest largest), so each phase keeps the top
    ``keep_ratio`` of the paths it can reach. Random sub-networks are then drawn uniformly
    from the kept ones among those draws (about ``keep_ratio * n_samples`` paths per phase), so
    a training step never pays for costing a path (for a supernet, a FLOP count of the
    extracted network). The sandwich's ``largest`` and ``smallest_in_phase`` stay as they are:
    they bound the sandwich and the largest is the in-place distillation teacher.
    """

    def __init__(self, model: SupernetModel, unlock: list[str] | None, path_filter: BucketRanker,
                 keep_ratio: float, cost_fn: CostFn | None = None, n_samples: int = 1000,
                 seed: int = 0) -> None:
        super().__init__(model, unlock)
        check_keep_ratio(keep_ratio)
        rng = np.random.default_rng(seed)
        samples = [super(PrunedPhaseSampler, self).sample(rng) for _ in range(n_samples)]
        self.rule = KeepRule(path_filter, resolve_cost_fn(path_filter, cost_fn), samples,
                             keep_ratio)

    def is_kept(self, arch: Architecture) -> bool:
        return self.rule.judge(arch)[0]

    def sample(self, rng: np.random.Generator) -> Architecture:
        pool = self.rule.kept_samples
        if not pool:
            raise NastkError(f"no kept sub-network among the phase's draws for unlocked "
                             f"dimensions {sorted(self.unlock)} (keep_ratio="
                             f"{self.rule.keep_ratio}); raise keep_ratio or n_samples")
        return pool[int(rng.integers(len(pool)))]


def pruned_sampler_factory(path_filter: BucketRanker, cost_fn: CostFn | None = None,
                           keep_ratio: float = 0.5, n_samples: int = 1000, seed: int = 0
                           ) -> Callable[[SupernetModel, list[str] | None], PrunedPhaseSampler]:
    """A ``sampler_factory`` for :class:`~nastk.training.supernet.SupernetTrainer` that trains
    only the paths ``path_filter`` keeps (see :class:`PrunedPhaseSampler`)::

        SupernetTrainer(model, cfg, sampler_factory=pruned_sampler_factory(filt, flops, 0.3))
    """
    check_keep_ratio(keep_ratio)
    path_filter.require_fitted()
    fn = resolve_cost_fn(path_filter, cost_fn)

    def factory(model: SupernetModel, unlock: list[str] | None) -> PrunedPhaseSampler:
        return PrunedPhaseSampler(model, unlock, path_filter, keep_ratio, cost_fn=fn,
                                  n_samples=n_samples, seed=seed)

    return factory
