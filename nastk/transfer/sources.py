"""Reading earlier tasks for a warm start: the evaluated architectures of earlier runs and
studies, each earlier task's scores pooled over its runs.

A *run folder* (one holding ``store.sqlite``) is one earlier task, named by its folder (a
study's run folder, ``<task>/<strategy>/seed_<k>``, by its task). A *study folder* (``nastk
study``'s ``<task>/<strategy>/seed_<k>/`` run folders) gives one earlier task per study task,
every strategy and seed of it pooled (so are run folders of one task given one by one). Each
run's results are scored by that run's own objective (larger is better), so tasks with other
metrics or directions mix; an architecture evaluated by several runs of one task gets the mean
of their scores. Architectures that are not of the new search's space are left out (counted as
``foreign``), and a source with none left stops the run before it starts, naming the source.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nastk.core.errors import ConfigError, InvalidArchitectureError, NastkError
from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.run.layout import STORE_FILE
from nastk.run.sqlite_store import META_OBJECTIVE, RunStore
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

__all__ = ["SourceTask", "describe_sources", "read_sources"]


@dataclass(frozen=True, eq=False)
class SourceTask:
    """One earlier task: its evaluated architectures and their scores (larger is better)."""

    name: str
    #: the run folders it was read from
    runs: tuple[str, ...]
    archs: tuple[Architecture, ...]
    scores: np.ndarray
    #: results left out: architectures that are not of the new search's space
    foreign: int = 0

    def digest(self) -> str:
        """A fingerprint of the data (architecture keys and scores), recorded in the new run's
        store so that a resume can tell whether the source changed since."""
        h = hashlib.sha256()
        for arch, score in zip(self.archs, self.scores, strict=True):
            h.update(f"{arch.key}\t{float(score)!r}\n".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {"task": self.name, "runs": len(self.runs),
                "from": sorted({str(_study_of(Path(r)) or r) for r in self.runs}),
                "architectures": len(self.archs), "foreign": self.foreign,
                "digest": self.digest()}


def _study_of(run: Path) -> Path | None:
    """The study folder of a study's run folder (``<study>/<task>/<strategy>/seed_<k>``,
    recognised by the seed folder's name), else ``None``."""
    return run.parent.parent.parent if run.name.startswith("seed_") else None


def _task_of(run: Path) -> str:
    """The earlier task a run folder is: its study task's name for a study's run folder, else
    the folder's own name."""
    return run.parent.parent.name if _study_of(run) is not None else run.name


def _run_folders(path: Path, tasks: list[str] | None,
                 exclude: list[str]) -> dict[str, list[Path]]:
    """The run folders of ``path`` by earlier-task name (a run folder, or a study folder)."""
    if (path / STORE_FILE).is_file():
        task = _task_of(path)
        if (tasks is not None and task not in tasks) or task in exclude:
            return {}
        return {task: [path]}
    if not path.is_dir():
        raise ConfigError(f"warm_start.from: {path} does not exist; give a run folder (with "
                          f"{STORE_FILE}) or a study folder written by `nastk study`")
    found: dict[str, list[Path]] = {}
    for store in sorted(path.glob(f"*/*/seed_*/{STORE_FILE}")):
        task = store.parent.parent.parent.name
        if (tasks is None or task in tasks) and task not in exclude:
            found.setdefault(task, []).append(store.parent)
    if not found and not any(path.glob(f"*/*/seed_*/{STORE_FILE}")):
        raise ConfigError(f"warm_start.from: {path} is neither a run folder (no {STORE_FILE}) "
                          "nor a study folder (no <task>/<strategy>/seed_<k>/ runs); give the "
                          "folder of a finished `nastk search` or `nastk study`")
    return found


def _read_run(run: Path) -> list[tuple[Architecture, float]]:
    try:
        with RunStore.open_existing(run) as store:
            objective_data = store.get_meta(META_OBJECTIVE)
            trials = store.finished()
    except NastkError as err:
        raise ConfigError(f"warm_start.from: cannot read {run}: {err}") from None
    if objective_data is None:
        raise ConfigError(f"warm_start.from: {run} records no objective (a run written by an "
                          "old nastk); resume or rerun it with this version first")
    objective = Objective.model_validate(objective_data)
    out = []
    for t in trials:
        if t.status is not Status.COMPLETE or t.result is None:
            continue
        score = objective.score(t.result)
        if score is not None and np.isfinite(score):
            out.append((t.arch, float(score)))
    return out


def read_sources(paths: list[Path], space: SearchSpace, tasks: list[str] | None = None,
                 exclude: list[str] | None = None) -> list[SourceTask]:
    """The earlier tasks under ``paths`` (module docstring), in the order they are found; a
    :class:`ConfigError` naming the path and the fix when one cannot be used."""
    by_task: dict[str, list[Path]] = {}
    for path in paths:
        for task, runs in _run_folders(Path(path), tasks, exclude or []).items():
            by_task.setdefault(task, []).extend(runs)
    if tasks is not None:
        missing = [t for t in tasks if t not in by_task and t not in (exclude or [])]
        if missing:
            raise ConfigError(f"warm_start.tasks: {missing} found in none of "
                              f"{[str(p) for p in paths]}; the tasks there are the study "
                              "folders' task folders (or a run folder's own name)")
    if not by_task:
        raise ConfigError(f"warm_start.from: no earlier task found in {[str(p) for p in paths]}"
                          + (f" once {exclude} are left out" if exclude else ""))
    out = []
    for task, runs in by_task.items():
        pooled: dict[str, list[float]] = {}
        archs: dict[str, Architecture] = {}
        foreign = total = 0
        for run in runs:
            for arch, score in _read_run(run):
                total += 1
                if arch.key not in archs:
                    try:
                        archs[arch.key] = space.validate(arch)
                    except InvalidArchitectureError:
                        foreign += 1
                        continue
                pooled.setdefault(arch.key, []).append(score)
        if not pooled:
            raise ConfigError(
                f"warm_start: earlier task {task!r} ({len(runs)} run(s), e.g. {runs[0]}) has "
                + (f"no architecture of this search space among its {total} results ({foreign} "
                   "foreign); warm-start from runs of the same space" if total else
                   "no completed trial; finish those runs first or leave them out"))
        keys = sorted(pooled)
        out.append(SourceTask(
            name=task, runs=tuple(str(r) for r in runs),
            archs=tuple(archs[k] for k in keys),
            scores=np.array([float(np.mean(pooled[k])) for k in keys]), foreign=foreign))
    return out


def describe_sources(sources: list[SourceTask], min_results: int) -> dict[str, object]:
    """What a warm-started run records in its store (and a resume must find again)."""
    return json.loads(json.dumps({"sources": [s.describe() for s in sources],
                                  "min_results": min_results}))
