"""Using a fitted path filter named by a config's ``path_filter:``: loading it (the file must
exist and bucket by a cost a model can be asked for), pruning a search space to the paths it
keeps, and the supernet trainer's sampler of kept paths (DetOFA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nastk.core.errors import ConfigError
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter.contract import PathFilter, path_filter_class
from nastk.prediction.path_filter.costs import check_model_cost, path_cost_fn
from nastk.prediction.path_filter.use import PathFilterUse
from nastk.space.search_space import SearchSpace
from nastk.task.contract import Task


def load_path_filter(file: Path, space: SearchSpace, *, supernet: SupernetModel | None = None,
                     task: Task | None = None) -> PathFilter:
    """The fitted filter in ``file`` for ``space``, its ``cost_fn`` counting a path's params or
    FLOPs on ``supernet``'s extracted sub-network when given, else on ``task``'s model of the
    architecture (see :func:`~nastk.prediction.path_filter.costs.path_cost_fn`)."""
    if not file.is_file():
        raise ConfigError(f"path_filter.file: {file} not found; fit one with `nastk "
                          "path-filter fit RUN_DIR --out FILE`")
    filt = path_filter_class().load(file, space)
    check_model_cost(filt.cost, str(file))
    filt.cost_fn = path_cost_fn(filt.cost, space, supernet=supernet, task=task)
    return filt


def pruned_search_space(use: PathFilterUse, space: SearchSpace, *, seed: int,
                        supernet: SupernetModel | None = None,
                        task: Task | None = None) -> SearchSpace:
    """``space`` limited to the paths the filter in ``use.file`` keeps: the top
    ``use.keep_ratio`` of every cost bucket, thresholds set from ``use.n_samples`` draws of
    ``space`` with ``seed``, paths costed on ``supernet`` or ``task`` as the evaluator records
    them."""
    filt = load_path_filter(use.file, space, supernet=supernet, task=task)
    pruned = filt.prune(space, use.keep_ratio, cost_fn=filt.cost_fn, n_samples=use.n_samples,
                        seed=seed)
    assert isinstance(pruned, SearchSpace)
    return pruned


def supernet_sampler_factory(use: PathFilterUse, model: SupernetModel,
                             seed: int = 0) -> Callable[..., Any]:
    """A ``sampler_factory`` for the supernet trainer that samples only the paths the filter in
    ``use.file`` keeps (thresholds per phase from ``use.n_samples`` paths of ``model``)."""
    filt = load_path_filter(use.file, model.space, supernet=model)
    return filt.supernet_sampler_factory(keep_ratio=use.keep_ratio, n_samples=use.n_samples,
                                         seed=seed, cost_fn=filt.cost_fn)
