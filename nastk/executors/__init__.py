"""Where candidates run. ``local``: one at a time in this process (the search loop itself, no
executor object). ``ray``: on a Ray cluster, either as Ray Tune trials (expensive candidates,
one trial per rung under the engine's scheduler; :mod:`nastk.executors.tune_trials`) or on a
pool of actors that build the evaluator once (cheap candidates;
:mod:`nastk.executors.actor_pool`). Under a scheduler, partial training travels between driver
and workers as bytes.

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

if TYPE_CHECKING:
    from nastk.core.objective import Objective
    from nastk.executors.actor_pool import ActorPoolExecutor
    from nastk.executors.ray_cluster import RayCluster
    from nastk.executors.tune_trials import TuneExecutor
    from nastk.executors.worker import EvaluatorFactory

__all__ = ["AshaConfig", "ExecutorConfig", "evaluator_kind", "open_executor", "ray_executor",
           "train_epochs"]


def evaluator_kind(evaluator: object) -> str:
    """``train``, ``supernet`` or ``function``: what ``executor.mode: auto`` and the ASHA check
    go by (a user's own evaluator class counts as ``function``: cheap, no epochs)."""
    from nastk.evaluation.train import TrainEvaluator
    from nastk.evaluation.weight_sharing import WeightSharingEvaluator

    if isinstance(evaluator, TrainEvaluator):
        return "train"
    if isinstance(evaluator, WeightSharingEvaluator):
        return "supernet"
    return "function"


def train_epochs(evaluator: object) -> tuple[int | None, int | None]:
    """``(epochs, steps)`` of a train evaluator's budget; ``(None, None)`` for others."""
    from nastk.evaluation.train import TrainEvaluator

    if isinstance(evaluator, TrainEvaluator):
        return evaluator.config.epochs, evaluator.config.steps
    return None, None


def ray_executor(ex: ExecutorConfig, factory: EvaluatorFactory, objective: Objective,
                 cluster: RayCluster, storage_dir: Path, *, kind: str,
                 epochs: int | None) -> ActorPoolExecutor | TuneExecutor:
    """The ray executor ``ex`` asks for, sized for ``cluster``, sending ``factory`` to its
    workers (``kind``: the evaluator's, see :func:`evaluator_kind`; ``epochs`` is no longer
    used: ``executor.scheduler: asha`` is the engine's scheduler now, see
    :meth:`ExecutorConfig.engine_scheduler`). Tune keeps its files under ``storage_dir``."""
    from nastk.executors.worker import WorkerSpec

    n = cluster.concurrency(ex)
    if ex.resolved_mode(kind) == "actors":
        from nastk.executors.actor_pool import ActorPoolExecutor

        return ActorPoolExecutor(WorkerSpec(factory, objective), ex.actors or n,
                                 cpus_per_actor=ex.cpus_per_candidate,
                                 gpus_per_actor=ex.gpus_per_candidate,
                                 batch_size=ex.batch_size, max_retries=ex.max_retries)
    from nastk.executors.tune_trials import TuneExecutor

    return TuneExecutor(WorkerSpec(factory, objective), n, storage_dir,
                        cpus_per_trial=ex.cpus_per_candidate,
                        gpus_per_trial=ex.gpus_per_candidate, max_retries=ex.max_retries)


@contextmanager
def open_executor(ex: ExecutorConfig | None, factory: EvaluatorFactory, objective: Objective,
                  evaluator: object, storage_dir: Path
                  ) -> Iterator[tuple[ActorPoolExecutor | TuneExecutor | None, str]]:
    """``(executor, description)``: ``None`` for ``local`` (or no executor); for ``ray``, a
    connection to the cluster (started or joined) that is closed again on exit. ``evaluator``
    is the driver's (its kind picks ``mode: auto`` and is checked against the scheduler);
    ``factory`` builds it in the workers."""
    if ex is None or ex.kind == "local":
        yield None, "local (in-process)"
        return
    kind = evaluator_kind(evaluator)
    epochs, steps = train_epochs(evaluator)
    ex.check_fits(kind, epochs, steps)
    from nastk.executors.ray_cluster import RayCluster

    cluster = RayCluster.connect(ex.address)
    try:
        from nastk.executors.worker import InstanceFactory

        if isinstance(factory, InstanceFactory):  # a search built in Python: its own modules
            from nastk.executors.shipping import pickle_by_value

            pickle_by_value(factory.evaluator, getattr(factory.evaluator, "fn", None))
        executor = ray_executor(ex, factory, objective, cluster, storage_dir, kind=kind,
                                epochs=epochs)
        yield executor, f"ray ({cluster.describe()}); {executor.describe()}"
    finally:
        cluster.close()
