"""One search from a config: its live parts built (:mod:`nastk.config.compose`) and run by the
one run lifecycle (:mod:`nastk.run.lifecycle`). ``nastk search``, the searches of a study and
a recipe's search stages all call :func:`run_search_config`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from nastk.config.compose import Components, build_components
from nastk.config.factory import ConfigEvaluatorFactory
from nastk.config.schema import IDENTITY_EXCLUDES, SearchConfig
from nastk.core.trial import Trial
from nastk.run.lifecycle import Outcome, SearchSetup, execute
from nastk.transfer.use import warm_start_row

__all__ = ["run_search_config", "search_setup"]


def search_setup(config: SearchConfig, components: Components | None = None) -> SearchSetup:
    """The live parts of the search ``config`` describes (built here unless ``components`` are
    given; building checks options, the objective's metric and the task's data first)."""
    parts = components if components is not None else build_components(config)
    return SearchSetup(
        name=config.name, space=parts.space, strategy=parts.strategy,
        evaluator=parts.evaluator, objective=parts.objective, budget=config.budget,
        identity=config, description=config.describe(),
        config=config.model_dump(mode="json"), task=parts.task,
        keep_checkpoints=config.keep_checkpoints, executor=config.executor,
        factory=(ConfigEvaluatorFactory.shipping(config.model_dump(mode="json"))
                 if config.executor.kind == "ray"
                 else ConfigEvaluatorFactory(config.model_dump(mode="json"))),
        report_meta={**config.report_meta(), **warm_start_row(parts.strategy.warm_start)},
        identity_excludes=IDENTITY_EXCLUDES,
        scheduler=parts.scheduler, after_search=latency_front_check(config, parts),
        warm_start=(parts.strategy.warm_start.describe()
                    if parts.strategy.warm_start is not None else None))


def latency_front_check(config: SearchConfig, parts: Components
                        ) -> Callable[[list[Trial], Path, Console], None] | None:
    """With ``latency: {table, measure_front: true}``: once the search ends, time its latency
    front on this machine (when the table was profiled on it) for the report's predicted
    against measured table (:mod:`nastk.latency.front_check`)."""
    predictor = getattr(parts.evaluator, "latency_predictor", None)
    task = parts.task
    if config.latency is None or not config.latency.measure_front or predictor is None \
            or task is None:
        return None
    table_path = str(config.latency.table)
    space = parts.space

    def check(trials: list[Trial], run_dir: Path, console: Console) -> None:
        from nastk.latency.front_check import check_front, describe_check

        doc = check_front(run_dir, trials, parts.objective, predictor.table, table_path,
                          task.input_shape, lambda arch: task.build_model(space, arch))
        console.print(describe_check(doc), highlight=False)

    return check


def run_search_config(config: SearchConfig, *, resume: bool = False,
                      console: Console | None = None, progress: bool = True) -> Outcome:
    """Run (or resume) the search a config describes into its run folder; writes store,
    checkpoints and report.

    Nothing is written until the run can start: plugins, options, the objective's metric and
    the task's data are checked first (:mod:`nastk.evaluation.preflight`), and a Ray cluster
    is connected to before the store is created. An interrupted run (Ctrl-C) still writes its
    report from what the store holds, then re-raises ``KeyboardInterrupt``."""
    setup = search_setup(config)  # fails on bad options or data before any write
    return execute(setup, config.resolved_run_dir(), resume=resume, console=console,
                   progress=progress)
