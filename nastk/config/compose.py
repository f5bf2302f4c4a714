"""From a validated config to live objects: the plugins it names imported and instantiated
(space, task, strategy), its objective, its evaluator, and a supernet model.

The pipelines (:mod:`nastk.pipelines.search`: a search, a study's searches, a recipe's stages),
the commands and the evaluator factory a config's Ray workers run
(:mod:`nastk.config.factory`) build through here; this module imports no command.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nastk.config.schema import PluginRef, SearchConfig, SupernetConfig
from nastk.core import registry
from nastk.core.errors import ConfigError, NastkError
from nastk.core.loading import load_object
from nastk.core.objective import Objective
from nastk.data.loading import Loading
from nastk.evaluation.base import (
    Evaluator,
    FunctionEvaluator,
    ResourceFunctionEvaluator,
    format_error,
)
from nastk.evaluation.preflight import check_objective, check_task_data
from nastk.evaluation.train import TrainEvaluator
from nastk.nn.supernet import SupernetModel, SupernetSpace
from nastk.run.identity import changed_fields, changes, describe_changes
from nastk.scheduling.config import build_scheduler
from nastk.scheduling.fidelity import Fidelity, fidelity_of
from nastk.scheduling.scheduler import Scheduler
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy
from nastk.task.contract import Task
from nastk.transfer.use import warm_start_strategy

if TYPE_CHECKING:
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.latency.predictor import LatencyPredictor


def import_plugins(modules: list[str]) -> None:
    """Import modules that register plugins (``plugins:`` in a config)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {name!r}: {err}. Is it installed or on "
                              "PYTHONPATH?") from err


def build_space(ref: PluginRef, where: str = "space.options",
                source: str | None = None) -> SearchSpace:
    """The registered search space ``ref`` names, with its options validated (errors start
    with ``source``, the config file, when given)."""
    return registry.instantiate(registry.SEARCH_SPACES, ref.name, ref.options, where=where,
                                source=source)


def build_task(ref: PluginRef, where: str = "task.options", source: str | None = None,
               loading: Loading | None = None) -> Task:
    """The registered task ``ref`` names, with its options validated (no data is loaded), its
    loaders reading data as ``loading`` says (a run config's ``data:``)."""
    task = registry.instantiate(registry.TASKS, ref.name, ref.options, where=where,
                                source=source)
    if loading is not None:
        task.loading = loading
    return task


@dataclass
class Components:
    """Everything a search needs, built from a config."""

    space: SearchSpace
    task: Task | None
    objective: Objective
    strategy: Strategy
    evaluator: Evaluator
    #: the multi-fidelity scheduler (``None``: every candidate gets the full budget)
    scheduler: Scheduler | None = None


def build_space_and_task(config: SearchConfig) -> tuple[SearchSpace, Task | None]:
    """Import the config's plugins and instantiate its space and task (validating options)."""
    import_plugins(config.plugins)
    space = build_space(config.space, source=config.source)
    task = (build_task(config.task, source=config.source, loading=config.data)
            if config.task is not None else None)
    return space, task


def build_objective(config: SearchConfig, task: Task | None) -> Objective:
    """The config's objective; metric and direction default to the task's primary metric."""
    metric = config.objective.metric or (task.primary_metric if task else None)
    direction = config.objective.direction or (task.direction if task else "max")
    return Objective(metric=metric, direction=direction, costs=tuple(config.objective.costs),
                     cut_short_on_front=config.objective.cut_short_on_front)


def build_strategy(config: SearchConfig, space: SearchSpace, objective: Objective) -> Strategy:
    """The registered strategy the config names, over ``space`` (validating its options),
    warm-started from ``config.warm_start``'s earlier runs when it has one (read here: a
    missing or foreign source stops the run before anything is written)."""
    strategy = registry.instantiate(registry.STRATEGIES, config.strategy.name,
                                    config.strategy.options, space, objective, seed=config.seed,
                                    where="strategy.options", source=config.source)
    if config.warm_start is not None:
        warm_start_strategy(config.warm_start, strategy, config.source or "config")
    return strategy


def build_evaluator(config: SearchConfig, space: SearchSpace, task: Task | None) -> Evaluator:
    """The evaluator ``config.evaluator`` describes (a supernet checkpoint is loaded here; a
    function's ``prepare()``, when it has one, is called here: a look-up table that cannot be
    read stops the run before its first trial)."""
    if config.evaluator.kind == "function":
        assert config.evaluator.function is not None
        fn = load_object(config.evaluator.function, "evaluator.function")
        prepare = getattr(fn, "prepare", None)
        if callable(prepare):
            try:
                prepare()
            except NastkError:
                raise
            except Exception as err:
                raise ConfigError(f"evaluator.function {config.evaluator.function}: cannot "
                                  f"prepare it: {format_error(err)}") from err
        sch = config.engine_scheduler
        if sch.active:
            assert sch.max_resource is not None
            return ResourceFunctionEvaluator(fn, Fidelity(
                "resource", sch.max_resource, min=min(sch.min_resource or 1.0,
                                                      sch.max_resource)))
        return FunctionEvaluator(fn)
    assert task is not None
    evaluator: TrainEvaluator | WeightSharingEvaluator
    if config.evaluator.kind == "supernet":
        assert config.evaluator.supernet is not None
        evaluator = build_weight_sharing_evaluator(config, space, task)
    else:
        evaluator = TrainEvaluator(task, space, config.evaluator.train, seed=config.seed,
                                   where="evaluator.train",
                                   objective=build_objective(config, task))
    evaluator.latency_predictor = build_latency_predictor(config, space, task)
    return evaluator


def build_latency_predictor(config: SearchConfig, space: SearchSpace,
                            task: Task | None) -> LatencyPredictor | None:
    """The predictor of ``config.latency``'s table for this space and the task's input shape
    (``None`` without one); a :class:`ConfigError` naming the file and the fix when the table
    is missing, malformed or of another space or shape."""
    if config.latency is None or task is None:
        return None
    from nastk.latency.predictor import LatencyPredictor

    try:
        return LatencyPredictor.load(config.latency.table, space, task.input_shape)
    except ConfigError as err:
        raise ConfigError(f"{config.source or 'config'}: {err}") from None


def check_evaluator_data(config: SearchConfig, task: Task | None) -> None:
    """Read a first batch of every split the config's evaluator needs and check the data set's
    files as the task's ``data_check`` says (:mod:`nastk.evaluation.preflight`); the driver
    does it before anything is written, each Ray worker again on its own node."""
    if task is not None and config.evaluator.kind in ("train", "supernet"):
        ev = config.evaluator
        eval_split = (ev.supernet.eval_split if ev.kind == "supernet" and ev.supernet
                      else ev.train.eval_split)
        batch = (ev.supernet.calib_batch_size if ev.kind == "supernet" and ev.supernet
                 else ev.train.batch_size)
        check_task_data(task, ["train", eval_split], batch)


def build_components(config: SearchConfig, *, check: bool = True) -> Components:
    """Instantiate the registered plugins a config names (validating their options). With
    ``check`` (the default), first refuse an objective metric the task does not report and
    read a first batch of every split the evaluator needs (:mod:`nastk.evaluation.preflight`), so a
    run that cannot succeed fails here, before anything is written."""
    space, task = build_space_and_task(config)
    objective = build_objective(config, task)
    if check:
        check_objective(objective, task)
        check_evaluator_data(config, task)
    if config.constraints or config.path_filter is not None:
        # the strategy searches the constrained / pruned space, costed by the evaluator's model
        evaluator = build_evaluator(config, space, task)
        if config.constraints:
            space = constrained_space(config, space, task, evaluator)
        if config.path_filter is not None:
            space = pruned_space(config, space, task, evaluator)
        strategy = build_strategy(config, space, objective)
        return Components(space, task, objective, strategy, evaluator,
                          build_config_scheduler(config, evaluator, objective))
    strategy = build_strategy(config, space, objective)
    evaluator = build_evaluator(config, space, task)
    return Components(space, task, objective, strategy, evaluator,
                      build_config_scheduler(config, evaluator, objective))


def build_config_scheduler(config: SearchConfig, evaluator: Evaluator,
                           objective: Objective) -> Scheduler | None:
    """The scheduler ``config.scheduler`` (or the older ``executor.scheduler``) asks for over
    the evaluator's resource; a :class:`ConfigError` naming the field when it cannot be."""
    try:
        return build_scheduler(config.engine_scheduler, fidelity_of(evaluator), objective)
    except ValueError as err:
        raise ConfigError(f"{config.source or 'config'}: {err}") from None


def constrained_space(config: SearchConfig, space: SearchSpace, task: Task | None,
                      evaluator: Evaluator) -> SearchSpace:
    """``space`` limited to ``config.constraints``' cost ranges, costed as the evaluator
    records them: a supernet's extracted subnet, or the task's model of the architecture."""
    from nastk.evaluation.cost import TableCosts, model_costs
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.prediction.path_filter import subnet_cost_fn
    from nastk.space.cost_range import CostRangeSpace

    names = [n for n in config.constraints if n != "latency_ms"]
    predicted = getattr(evaluator, "latency_predictor", None)
    counted: Callable[[Any], dict[str, float]]
    if not names:
        def counted(arch: Any) -> dict[str, float]:
            return {}
    elif isinstance(evaluator, WeightSharingEvaluator):
        fns = {n: subnet_cost_fn(evaluator.model, n) for n in names}

        def counted(arch: Any) -> dict[str, float]:
            return {n: fn(arch) for n, fn in fns.items()}
    else:
        assert task is not None
        # params and FLOPs from the space's cost table when it has one (nothing built)
        table = TableCosts(space, task.input_shape, lambda arch: task.build_model(space, arch))

        def counted(arch: Any) -> dict[str, float]:
            found = table(arch)
            if found is not None:
                return found
            model = task.build_model(space, arch)
            return model_costs(model, task.input_shape, latency=False)

    def costs(arch: Any) -> dict[str, float]:
        out = dict(counted(arch))
        if "latency_ms" in config.constraints:
            assert predicted is not None  # the schema requires `latency: {table}`
            out["latency_ms"] = predicted(arch)
        return out

    constrained = CostRangeSpace(space, costs, config.constraints)
    try:  # an empty range stops the run here, before anything is written
        constrained.check_feasible(config.seed)
    except NastkError as err:
        raise ConfigError(f"{config.source or 'config'}: {err}") from None
    return constrained


def pruned_space(config: SearchConfig, space: SearchSpace, task: Task | None,
                 evaluator: Evaluator) -> SearchSpace:
    """``space`` limited to the paths the fitted filter of ``config.path_filter`` keeps (the top
    ``keep_ratio`` of every cost bucket, thresholds set from ``n_samples`` draws of ``space``
    with the run's seed), costed as the evaluator records them."""
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.prediction.path_filter import pruned_search_space

    assert config.path_filter is not None
    supernet = evaluator.model if isinstance(evaluator, WeightSharingEvaluator) else None
    return pruned_search_space(config.path_filter, space, seed=config.seed, supernet=supernet,
                               task=task)


def build_weight_sharing_evaluator(config: SearchConfig, space: SearchSpace,
                                   task: Task) -> Evaluator:
    """A :class:`WeightSharingEvaluator` over the supernet checkpoint a config names, refusing a
    checkpoint trained for another space or task."""
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.training.supernet import load_supernet_weights, read_checkpoint

    ws = config.evaluator.supernet
    assert ws is not None and config.task is not None
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"evaluator.kind 'supernet': search space {config.space.name!r} has "
                          "no supernet (it is not a SupernetSpace); use a weight-sharing space "
                          "such as ofa_mbv3, or evaluator.kind 'train'")
    if ws.format != "nastk":
        return _public_supernet_evaluator(config, space, task)
    state = read_checkpoint(ws.checkpoint)
    trained_for = json.loads(state.get("identity", "{}") or "{}")
    wanted = {"space": config.space.model_dump(mode="json"),
              "task": config.task.model_dump(mode="json")}
    shared = [k for k in wanted if k in trained_for]
    found = changes({k: trained_for[k] for k in shared}, {k: wanted[k] for k in shared})
    if found:
        raise ConfigError(f"evaluator.supernet.checkpoint: {ws.checkpoint} was trained for "
                          f"another {' and '.join(changed_fields(found))} "
                          f"({describe_changes(found)}: the supernet's -> this config's); use "
                          "the same space and task as the supernet config")
    model = SupernetModel(space, task)
    load_supernet_weights(model, state["model"], str(ws.checkpoint))
    return WeightSharingEvaluator(model, ws, seed=config.seed)


def _public_supernet_evaluator(config: SearchConfig, space: SupernetSpace,
                               task: Task) -> Evaluator:
    """A :class:`WeightSharingEvaluator` over a supernet saved in a public layout
    (``evaluator.supernet.format``), searched as it is: every tensor of the task's model must
    come from the file, or the run stops before its first trial."""
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.training.pretrained import InitConfig, load_init

    ws = config.evaluator.supernet
    assert ws is not None
    init = InitConfig.model_validate({"from": ws.checkpoint, "format": ws.format,
                                      "part": "all"})
    model = SupernetModel(space, task)
    try:  # the file is read once, here: a missing or foreign one is named by load_init
        report = load_init(model.net, init, space=space)
    except NastkError as err:
        raise ConfigError(f"evaluator.supernet.checkpoint: {err}") from None
    if report.missing:
        shown = ", ".join(report.missing[:3]) + (", ..." if len(report.missing) > 3 else "")
        raise ConfigError(
            f"evaluator.supernet.checkpoint: {ws.checkpoint} (format {ws.format}) has no "
            f"weights for {len(report.missing)} tensors of the {config.task.name!r} model "
            f"({shown}): they would stay random and every score would be noise. Fine-tune the "
            f"supernet on this task first (`nastk supernet train` with training.init "
            f"{{from: {ws.checkpoint}, format: {ws.format}}}) and search its checkpoint, or, "
            "for once-for-all's own classes, use task classification with head_hidden: 1280")
    print(report.summary(), file=sys.stderr)
    return WeightSharingEvaluator(model, ws, seed=config.seed)


def build_supernet_model(config: SupernetConfig) -> SupernetModel:
    """The untrained supernet of a supernet config: its weight-sharing space with the task's
    head."""
    import_plugins(config.plugins)
    space = build_space(config.space, source=config.source)
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"space: {config.space.name!r} is not a weight-sharing space (no "
                          "build_supernet); pick one such as ofa_mbv3")
    return SupernetModel(space, build_task(config.task, source=config.source,
                                           loading=config.data))


def build_from_refs(plugins: list[str], space: dict[str, Any],
                    task: dict[str, Any] | None) -> tuple[SearchSpace, Task | None]:
    """Space and task from plugin references stored as data (``{"name", "options"}``), e.g. in
    an exported model's payload."""
    import_plugins(plugins)
    return (build_space(PluginRef.model_validate(space)),
            build_task(PluginRef.model_validate(task)) if task is not None else None)
