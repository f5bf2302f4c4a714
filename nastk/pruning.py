"""DetOFA-style pruning from the command line: fit a path filter on a run's results
(`nastk path-filter fit`), then train a supernet on the paths it keeps (`path_filter:` in a
supernet config).

The path filter itself is the ``path_filter`` predictor plugin (``predictors/path_filter.py``);
this module reaches it through the registry, so the engine does not import the plugin folders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk import registry
from nastk.errors import ConfigError, NastkError
from nastk.space.architecture import Architecture

#: costs a supernet's sub-network can be asked for without timing it
SUBNET_COSTS = ("params", "flops")


class PathFilterUse(BaseModel):
    """``path_filter:`` in a supernet config: train only the paths a fitted filter keeps."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="a filter written by `nastk path-filter fit`")
    keep_ratio: float = Field(0.5, gt=0.0, le=1.0,
                              description="fraction of every cost bucket trained")
    n_samples: int = Field(200, ge=10, description="paths drawn and costed per phase; the kept "
                                                    "ones (about keep_ratio of them) are the "
                                                    "random paths that phase trains")


def subnet_cost_fn(model: Any, cost: str) -> Callable[[Architecture], float]:
    """``arch -> params or flops`` of ``model.extract(arch)`` at the task's input shape (what the
    weight-sharing evaluator records), cached per architecture."""
    from nastk.cost import count_flops, count_params

    if cost not in SUBNET_COSTS:
        raise ConfigError(f"path_filter: the filter buckets by {cost!r}; a supernet path's cost "
                          f"can be {list(SUBNET_COSTS)} (refit it with --cost flops or params)")
    cache: dict[str, float] = {}
    shape = model.task.input_shape

    def fn(arch: Architecture) -> float:
        if arch.key not in cache:
            sub = model.extract(arch).cpu().eval()
            cache[arch.key] = float(count_params(sub) if cost == "params"
                                    else count_flops(sub, shape))
        return cache[arch.key]

    return fn


def load_path_filter(use: PathFilterUse, model: Any) -> Any:
    """The fitted filter in ``use.file``, costing paths of ``model``'s space."""
    cls = registry.PREDICTORS.get("path_filter")
    if not use.file.is_file():
        raise ConfigError(f"path_filter.file: {use.file} not found; fit one with `nastk "
                          "path-filter fit RUN_DIR --out FILE`")
    filt = cls.load(use.file, model.space)
    filt.cost_fn = subnet_cost_fn(model, filt.options.cost)
    return filt


def supernet_sampler_factory(use: PathFilterUse, model: Any, seed: int = 0) -> Any:
    """A ``sampler_factory`` for the supernet trainer that samples only kept paths."""
    filt = load_path_filter(use, model)
    return filt.supernet_sampler_factory(keep_ratio=use.keep_ratio, n_samples=use.n_samples,
                                         seed=seed)


@dataclass
class FitSummary:
    """What `nastk path-filter fit` did."""

    file: Path
    n_train: int
    n_holdout: int
    cost: str
    n_buckets: int
    bucket_tau: float  # held-out Kendall tau within cost buckets (weighted by bucket size)


def fit_from_run(run_dir: str | Path, out: str | Path, cost: str = "flops", n_buckets: int = 5,
                 holdout: float = 0.2, seed: int = 0,
                 options: dict[str, Any] | None = None) -> FitSummary:
    """Fit a path filter on a run's successful trials (the run's objective as the score, the
    recorded ``cost`` for the buckets), report its within-bucket Kendall tau on a random
    ``holdout`` share, refit on everything and save it to ``out``."""
    from nastk.config import parse_config
    from nastk.experiment import build_components
    from nastk.store import RunStore

    run_dir = Path(run_dir)
    with RunStore.open_existing(run_dir) as store:
        config = parse_config(store.get_meta("config"), f"{run_dir}/store.sqlite:config")
        trials = store.finished()
    comps = build_components(config)
    rows = [(t.arch, comps.objective.score(t.result), t.result.value(cost))
            for t in trials if t.result is not None]
    rows = [r for r in rows if r[1] is not None and r[2] is not None]
    if len(rows) < 10:
        seen = sorted({c for t in trials if t.result for c in t.result.costs})
        raise NastkError(f"{run_dir}: {len(rows)} successful trials with a {cost!r} cost; a path "
                         f"filter needs at least 10 (costs recorded: {seen}). Search longer, or "
                         "pick --cost from those")
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout must be in [0, 1), got {holdout}")
    opts = {**(options or {}), "cost": cost, "n_buckets": n_buckets}

    def make() -> Any:
        return registry.instantiate(registry.PREDICTORS, "path_filter", opts, comps.space,
                                    seed=seed, where="path filter options")

    archs = [r[0] for r in rows]
    scores = np.array([r[1] for r in rows], dtype=float)
    costs = np.array([r[2] for r in rows], dtype=float)
    tau, n_hold = math.nan, 0
    if holdout > 0:
        order = np.random.default_rng(seed).permutation(len(rows))
        n_hold = max(3, round(holdout * len(rows)))
        hold, train = order[:n_hold], order[n_hold:]
        filt = make().fit([archs[i] for i in train], scores[train], costs[train])
        tau = filt.within_bucket_tau([archs[i] for i in hold], scores[hold], costs[hold])
    final = make().fit(archs, scores, costs)
    path = final.save(out)
    return FitSummary(path, len(rows), n_hold, cost, n_buckets, tau)
