"""Checks that run before anything is written: a run that cannot succeed stops at once, with
the reason, instead of recording one failed trial after another.

- :func:`check_objective`: the objective's metric is one the task reports (or a cost);
- :func:`check_task_data`: the task's splits build, the ones the run reads exist and are not
  empty, and a first batch of each reads and collates (a missing dataset folder, an empty
  split, a broken first image or mismatched image and label sizes surface here with the
  dataset's own message); then :func:`check_data_files` checks every file of a real data set
  (or a sample of its items, as the task's ``data_check`` option says).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nastk.core.errors import ConfigError, NastkError
from nastk.data.folders import folder_datasets
from nastk.data.loaders import make_loader, split_batch
from nastk.evaluation.base import format_error

if TYPE_CHECKING:
    from nastk.core.objective import Objective
    from nastk.task.contract import Task

__all__ = ["COSTS", "check_data_files", "check_objective", "check_task_data"]

#: cost names an objective may also optimise
COSTS = ("params", "flops", "latency_ms")


def check_objective(objective: Objective, task: Task | None) -> None:
    """Refuse an objective metric the task does not report (tasks that declare no metrics,
    and runs without a task, are checked trial by trial instead)."""
    if task is None:
        return
    names = task.metric_names()
    metric = objective.metric
    if not names or metric in names or metric in COSTS or metric.startswith("train_loss_"):
        return
    close = difflib.get_close_matches(metric, names, n=1)
    raise ConfigError(f"objective.metric: {metric!r} is not a metric of task {task.name!r}; it "
                      f"reports {names}" + (f" (did you mean {close[0]!r}?)" if close else "")
                      + "; costs params, flops, latency_ms can be optimised too")


def check_task_data(task: Task, splits: Sequence[str], batch_size: int) -> None:
    """Build the task's splits once and read a first batch of each split in ``splits``,
    raising a :class:`~nastk.core.errors.NastkError` with the dataset's own message (a task's
    dataset errors name the path and the expected layout) when anything fails."""
    try:
        available = task.splits()
    except NastkError:
        raise
    except Exception as err:
        raise ConfigError(f"task {task.name!r}: its data could not be loaded: "
                          f"{format_error(err)}") from err
    for name in dict.fromkeys(splits):
        if name not in available:
            raise ConfigError(f"task {task.name!r} has no split {name!r}; it has "
                              f"{sorted(available)} (check evaluator.train.eval_split or "
                              "evaluator.supernet.eval_split)")
        dataset = available[name]
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ConfigError(f"task {task.name!r}: split {name!r} is empty; check the "
                              "dataset's folder and split options")
        try:
            batch = next(iter(make_loader(task, dataset, min(batch_size, n))))
            split_batch(batch)
        except NastkError:
            raise
        except Exception as err:
            raise ConfigError(f"task {task.name!r}: reading the first batch of split {name!r} "
                              f"failed: {format_error(err)}") from err
    check_data_files(task, available)


def check_data_files(task: Task, splits: Mapping[str, object]) -> None:
    """The task's ``data_check`` option (``full`` by default for real data sets) applied to
    every folder data set its splits are made of: ``full`` checks that every file exists and
    its image header decodes, ``sample`` reads 32 items of each whole, ``first-batch`` adds
    nothing to the first batches :func:`check_task_data` read. A bad file raises the data
    set's :class:`~nastk.data.folders.DatasetError`, naming it."""
    mode = getattr(getattr(task, "options", None), "data_check", "first-batch")
    if mode == "first-batch":
        return
    seen: set[int] = set()
    for dataset in splits.values():
        for folder in folder_datasets(dataset):
            if id(folder.items) in seen:  # the same listing (a twin of a data set) once
                continue
            seen.add(id(folder.items))
            if mode == "full":
                folder.check_files()
            else:
                folder.check_sample()
