"""Training a supernet on the paths a fitted path filter keeps (``path_filter:`` in a supernet
config, DetOFA-style): the filter loaded through the registry, paths costed on the supernet,
the trainer's sampler factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nastk.config.schema import PathFilterUse
from nastk.core.errors import ConfigError
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter import PathFilter, path_filter_class
from nastk.space.architecture import Architecture

#: costs a supernet's sub-network can be asked for without timing it
SUBNET_COSTS = ("params", "flops")


def subnet_cost_fn(model: SupernetModel, cost: str) -> Callable[[Architecture], float]:
    """``arch -> params or flops`` of ``model.extract(arch)`` at the task's input shape (what the
    weight-sharing evaluator records), cached per architecture."""
    from nastk.evaluation.cost import count_flops, count_params

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


def load_path_filter(use: PathFilterUse, model: SupernetModel) -> PathFilter:
    """The fitted filter in ``use.file``, costing paths of ``model``'s space."""
    cls = path_filter_class()
    if not use.file.is_file():
        raise ConfigError(f"path_filter.file: {use.file} not found; fit one with `nastk "
                          "path-filter fit RUN_DIR --out FILE`")
    filt = cls.load(use.file, model.space)
    filt.cost_fn = subnet_cost_fn(model, filt.cost)
    return filt


def supernet_sampler_factory(use: PathFilterUse, model: SupernetModel, seed: int = 0) -> Any:
    """A ``sampler_factory`` for the supernet trainer that samples only kept paths."""
    filt = load_path_filter(use, model)
    return filt.supernet_sampler_factory(keep_ratio=use.keep_ratio, n_samples=use.n_samples,
                                         seed=seed)
