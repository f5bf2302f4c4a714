"""A study's config: tasks x strategies x seeds, each combination an ordinary search run.

Every search is a :class:`nastk.config.schema.SearchConfig` made from the task's part (space, task,
evaluator, objective, budget), the strategy's part and the seed, with its own run folder
``run_dir/<task>/<strategy>/seed_<k>``, so each run keeps every guarantee of ``nastk search``
(validated before it starts, resumable, no duplicate evaluations, its own report).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nastk.config.schema import SearchConfig, parse_config
from nastk.transfer.use import WarmStartUse

__all__ = ["StudyConfig", "StudyExecutor", "StudyRun", "StudyStrategy", "StudyTask"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_label(value: str, what: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(f"{what} label {value!r} must be a folder name: letters, digits, "
                         "'_', '.' and '-', starting with a letter or digit")
    return value


class StudyTask(BaseModel):
    """One task of a study: what every strategy searches, with the same budget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="label of the task in the report and its run folders")
    space: dict[str, Any] = Field(..., description="as a search config's `space`")
    task: dict[str, Any] | None = Field(None, description="as a search config's `task`")
    evaluator: dict[str, Any] = Field(default_factory=dict)
    objective: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=lambda: {"trials": 50})
    report_metric: str | None = Field(
        None, description="the metric of the incumbent (best by the objective) that the report "
        "plots and ranks, e.g. test_acc_200ep while searching on val_acc_12ep; default: the "
        "objective's metric")
    optimum: float | None = Field(None, description="the true best value of the report metric "
                                  "(a tabular benchmark's optimum); regret is against it")
    worst: float | None = Field(None, description="the true worst value, for normalising regret")
    target: float | None = Field(None, description="value whose queries-to-reach the report "
                                 "counts (e.g. a published figure); default: the top-1% value "
                                 "reached in the study")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v, "task")


class StudyStrategy(BaseModel):
    """One strategy of a study, as a search config's `strategy` plus a label."""

    model_config = ConfigDict(extra="forbid")

    name: str
    label: str | None = Field(None, description="default: the strategy's name")
    options: dict[str, Any] = Field(default_factory=dict)
    warm_start: WarmStartUse | None = Field(
        None, description="as a search config's `warm_start`; each task's searches leave that "
        "task itself out of the sources (leave-one-task-out)")

    @property
    def key(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _label(self) -> StudyStrategy:
        _check_label(self.key, "strategy")
        return self


class StudyExecutor(BaseModel):
    """Where the searches run: one after another in this process, or many at once on Ray."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="ray: a cluster address; default: start a "
                                "local Ray")
    num_cpus: int | None = Field(None, ge=1, description="ray: CPUs of a local Ray (default: "
                                 "all)")
    cpus_per_search: float = Field(1.0, gt=0.0, description="ray: CPUs each search reserves")


class StudyRun(BaseModel):
    """One search of the study."""

    task: str
    strategy: str
    seed: int
    config: dict[str, Any]


class StudyConfig(BaseModel):
    """``nastk study CONFIG``: every task x every strategy x every seed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("study", min_length=1)
    run_dir: Path | None = Field(None, description="default: runs/<name>")
    plugins: list[str] = Field(default_factory=list)
    seeds: int | list[int] = Field(3, description="a count (seeds 0..n-1) or a list")
    tasks: list[StudyTask] = Field(..., min_length=1)
    strategies: list[StudyStrategy] = Field(..., min_length=1)
    executor: StudyExecutor = Field(default_factory=StudyExecutor)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"seeds must be >= 1, got {v}")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {v}")
        return v

    @model_validator(mode="after")
    def _unique(self) -> StudyConfig:
        for what, names in (("task", [t.name for t in self.tasks]),
                            ("strategy", [s.key for s in self.strategies])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} labels {dup} repeat; give each a distinct "
                                 f"{'name' if what == 'task' else 'label'}")
        return self

    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def run_dir_of(self, task: str, strategy: str, seed: int) -> Path:
        """The run folder of one search: ``run_dir/<task>/<strategy>/seed_<k>``."""
        return self.resolved_run_dir() / task / strategy / f"seed_{seed}"

    def runs(self, source: str = "study") -> list[tuple[StudyRun, SearchConfig]]:
        """Every search, validated as a search config (a bad one is named with its task,
        strategy and seed before anything runs)."""
        out = []
        for t in self.tasks:
            for s in self.strategies:
                for seed in self.seed_list():
                    data: dict[str, Any] = {
                        "name": f"{self.name}/{t.name}/{s.key}/seed_{seed}",
                        "run_dir": str(self.run_dir_of(t.name, s.key, seed)),
                        "seed": seed, "plugins": self.plugins, "space": t.space,
                        "strategy": {"name": s.name, "options": s.options},
                        "evaluator": t.evaluator, "objective": t.objective,
                        "budget": t.budget}
                    if t.task is not None:
                        data["task"] = t.task
                    if s.warm_start is not None:
                        data["warm_start"] = s.warm_start.model_copy(update={
                            "exclude": sorted({*s.warm_start.exclude, t.name})
                        }).model_dump(mode="json")
                    config = parse_config(data, f"{source}: task {t.name!r}, strategy "
                                                f"{s.key!r}, seed {seed}")
                    out.append((StudyRun(task=t.name, strategy=s.key, seed=seed,
                                         config=config.model_dump(mode="json")), config))
        return out
