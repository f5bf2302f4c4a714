"""What a path costs, for a path filter's cost buckets: the params or FLOPs of the network an
architecture stands for, counted the way the evaluator records them (a supernet's extracted
sub-network, or the task's own model of the architecture), once per architecture; and the check
that such a cost function agrees with the costs the filter was fitted on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from nastk.core.errors import ConfigError
from nastk.evaluation.cost import TableCosts, count_flops, count_params
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter.contract import CostFn, PathFilter
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task.contract import Task

#: costs a model of an architecture can be asked for without timing it
MODEL_COSTS = ("params", "flops")

#: relative disagreement allowed between evaluated costs and a cost function's
COST_TOLERANCE = 0.05


def check_model_cost(cost: str, what: str = "the filter") -> None:
    """Refuse a cost that cannot be counted on a model (latency, or a benchmark's own)."""
    if cost not in MODEL_COSTS:
        raise ConfigError(f"path_filter: {what} buckets by {cost!r}; a path's cost can be "
                          f"counted as {list(MODEL_COSTS)} only (refit it with --cost flops or "
                          "params)")


def cached_cost_fn(cost: str, build: Callable[[Architecture], nn.Module],
                   input_shape: Sequence[int],
                   space: SearchSpace | None = None) -> Callable[[Architecture], float]:
    """``arch -> params or flops`` of the network ``build(arch)`` returns (FLOPs at
    ``input_shape``), counted once per architecture. When ``space`` (the space ``build``
    makes networks of) has a cost table, the table's values (:class:`TableCosts`: the same
    counts, without building every network)."""
    check_model_cost(cost)
    cache: dict[str, float] = {}
    table = TableCosts(space, input_shape, build)

    def fn(arch: Architecture) -> float:
        if arch.key not in cache:
            counts = table(arch)
            if counts is not None:
                cache[arch.key] = counts[cost]
                return cache[arch.key]
            net = build(arch)
            cache[arch.key] = float(count_params(net) if cost == "params"
                                    else count_flops(net, input_shape))
        return cache[arch.key]

    return fn


def subnet_cost_fn(model: SupernetModel, cost: str) -> Callable[[Architecture], float]:
    """``arch -> params or flops`` of ``model.extract(arch)`` at the task's input shape (what the
    weight-sharing evaluator records), cached per architecture."""
    return cached_cost_fn(cost, lambda arch: model.extract(arch).cpu().eval(),
                          model.task.input_shape, getattr(model, "space", None))


def model_cost_fn(task: Task, space: SearchSpace, cost: str) -> Callable[[Architecture], float]:
    """``arch -> params or flops`` of ``task.build_model(space, arch)`` at the task's input shape
    (what the training evaluator records), cached per architecture."""
    return cached_cost_fn(cost, lambda arch: task.build_model(space, arch).eval(),
                          task.input_shape, space)


def path_cost_fn(cost: str, space: SearchSpace, *, supernet: SupernetModel | None = None,
                 task: Task | None = None) -> Callable[[Architecture], float]:
    """The cost function of the paths of ``space``: on ``supernet``'s extracted sub-networks
    when given (weight sharing), else on ``task``'s model of each architecture."""
    if supernet is not None:
        return subnet_cost_fn(supernet, cost)
    if task is None:
        raise ConfigError("path_filter needs a model to cost paths: a supernet (evaluator kind "
                          "'supernet') or a task (evaluator kind 'train')")
    return model_cost_fn(task, space, cost)


def check_cost_fn_agrees(path_filter: PathFilter, archs: Sequence[Architecture],
                         costs: Sequence[float], cost_fn: CostFn, space: SearchSpace,
                         fix: str) -> None:
    """Refuse a ``cost_fn`` whose costs of ``archs`` differ from their evaluated ``costs`` by
    more than :data:`COST_TOLERANCE` (relative): a filter's buckets are cut on the evaluated
    costs and a space is pruned on ``cost_fn``'s, so the thresholds would land in the wrong
    place. ``fix`` names the option that sets the cost function."""
    cost = path_filter.cost
    told = np.asarray(costs, dtype=np.float64)
    fn = path_filter.cost_values(list(archs), cost_fn=cost_fn)
    rel = np.abs(fn - told) / np.maximum(np.abs(told), 1e-12)
    worst = int(np.argmax(rel))
    if rel[worst] > COST_TOLERANCE:
        arch = archs[worst]
        raise ConfigError(
            f"path-filter search: for {space.render(arch) or arch.key} the evaluator "
            f"reported {cost} = {told[worst]:.6g} but the cost function says "
            f"{fn[worst]:.6g}; the filter would prune at the wrong costs. Make them count "
            f"the same network (e.g. the space's task option) or set {fix}")
