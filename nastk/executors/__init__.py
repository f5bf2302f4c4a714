"""Where candidates run. ``local``: one at a time in this process (the search loop itself, no
executor object). ``ray``: on a Ray cluster, either as Ray Tune trials (expensive candidates,
optional ASHA early stopping; :mod:`nastk.executors.tune_trials`) or on a pool of actors that
build the evaluator once (cheap candidates; :mod:`nastk.executors.actor_pool`).

In every case the store is written and the strategy is asked and told only by the driver
process, through :meth:`nastk.run.loop.Search.propose` and :meth:`nastk.run.loop.Search.record`,
so a ray run leaves the same store, report and leaderboard as a local one, and ``--resume``
works across executors. Ray is imported only when a ray executor is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nastk.config.executors import AshaConfig, ExecutorConfig
from nastk.run.layout import RunLayout

if TYPE_CHECKING:
    from nastk.config.schema import SearchConfig
    from nastk.executors.actor_pool import ActorPoolExecutor
    from nastk.executors.ray_cluster import RayCluster
    from nastk.executors.tune_trials import TuneExecutor

__all__ = ["AshaConfig", "ExecutorConfig", "open_executor", "ray_executor"]


def ray_executor(config: SearchConfig, cluster: RayCluster,
                 run_dir: Path) -> ActorPoolExecutor | TuneExecutor:
    """The ray executor ``config.executor`` asks for, sized for ``cluster``; Tune keeps its
    files under ``run_dir/ray``."""
    from nastk.executors.worker import WorkerSpec

    ex = config.executor
    n = cluster.concurrency(ex)
    if ex.resolved_mode(config.evaluator.kind) == "actors":
        from nastk.executors.actor_pool import ActorPoolExecutor

        return ActorPoolExecutor(WorkerSpec.from_config(config), ex.actors or n,
                                 cpus_per_actor=ex.cpus_per_candidate,
                                 gpus_per_actor=ex.gpus_per_candidate,
                                 batch_size=ex.batch_size, max_retries=ex.max_retries)
    from nastk.executors.tune_trials import TuneExecutor

    asha = ex.scheduler == "asha"
    return TuneExecutor(WorkerSpec.from_config(config, epoch_reports=asha), n,
                        RunLayout(run_dir).ray, cpus_per_trial=ex.cpus_per_candidate,
                        gpus_per_trial=ex.gpus_per_candidate, max_retries=ex.max_retries,
                        asha=ex.asha.model_dump() if asha else None,
                        epochs=config.evaluator.train.epochs if asha else None)


@contextmanager
def open_executor(config: SearchConfig, run_dir: Path
                  ) -> Iterator[tuple[ActorPoolExecutor | TuneExecutor | None, str]]:
    """``(executor, description)`` for the config: ``None`` for ``local``; for ``ray``, a
    connection to the cluster (started or joined) that is closed again on exit."""
    if config.executor.kind == "local":
        yield None, "local (in-process)"
        return
    from nastk.executors.ray_cluster import RayCluster

    cluster = RayCluster.connect(config.executor.address)
    try:
        executor = ray_executor(config, cluster, run_dir)
        yield executor, f"ray ({cluster.describe()}); {executor.describe()}"
    finally:
        cluster.close()
