"""The configs a user writes (YAML), validated by pydantic: the schemas only (building what
they name is :mod:`nastk.config.compose`).

Errors name the file, the field path and the fix, e.g.::

    examples/bad.yaml: budget.trials: Input should be greater than 0 (got -3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from nastk.config.executors import ExecutorConfig, SupernetExecutorConfig
from nastk.core.errors import ConfigError
from nastk.core.options import format_validation_error
from nastk.core.version import __version__
from nastk.data.loading import Loading
from nastk.evaluation.train import TrainConfig
from nastk.evaluation.weight_sharing import WeightSharingConfig
from nastk.latency.use import LatencyUse
from nastk.prediction.path_filter.use import PathFilterUse
from nastk.run.loop import Budget
from nastk.scheduling.config import SchedulerConfig
from nastk.training.supernet_config import NOT_IDENTITY, SupernetTrainConfig
from nastk.transfer.use import WarmStartUse

M = TypeVar("M", bound=BaseModel)

#: config fields a resumed run may change (where it runs included)
IDENTITY_EXCLUDES = ("budget", "run_dir", "keep_checkpoints", "name", "executor", "data")


class _RunName(BaseModel):
    name: str = Field("run", min_length=1)
    run_dir: Path | None = Field(None, description="defaults to runs/<name>")

    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name


class _RunSeed(BaseModel):
    seed: int = 0


class _RunPlugins(BaseModel):
    plugins: list[str] = Field(default_factory=list,
                               description="modules to import first (they register plugins)")


class RunConfig(_RunPlugins, _RunName):
    """What every run config has: a ``name``, a ``run_dir`` (default ``runs/<name>``) and the
    ``plugins`` to import first. Subclasses set their own default ``name``. ``source`` is the
    file it was read from (``None`` when built in code), so that plugin-option errors found
    later name the file."""

    model_config = ConfigDict(extra="forbid")
    _source: str | None = PrivateAttr(default=None)

    data: Loading = Field(default_factory=Loading,
                          description="how the loaders read the task's data: worker processes, "
                                      "prefetching, pinned memory (not part of the identity)")

    @property
    def source(self) -> str | None:
        return self._source


class SeededRunConfig(RunConfig, _RunPlugins, _RunSeed, _RunName):
    """A :class:`RunConfig` with a ``seed``. (The mixin order keeps the fields in the order the
    configs always had: name, run_dir, seed, plugins.)"""


class PluginRef(BaseModel):
    """A registered plugin by name, with its options (``strategy: evolution`` is shorthand for
    ``strategy: {name: evolution}``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class ObjectiveConfig(BaseModel):
    """What to optimise; ``metric`` and ``direction`` default to the task's primary metric."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = None
    direction: Literal["max", "min"] | None = None
    costs: list[Literal["params", "flops", "latency_ms"]] = Field(
        default_factory=list, description="costs to minimise jointly (multi-objective search)")
    cut_short_on_front: bool = Field(
        False, description="let trials a scheduler (ASHA) stopped early onto Pareto fronts")


class EvaluatorConfig(BaseModel):
    """How a candidate is scored: ``train`` from scratch on the task; ``supernet``: inherit the
    weights of a trained supernet (+ BN recalibration); or a Python ``function`` (``module:attr``,
    mapping an Architecture to a dict of metrics) for synthetic objectives and lookups."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train", "function", "supernet"] = "train"
    function: str | None = Field(None, description="module:attr, for kind 'function'")
    train: TrainConfig = Field(default_factory=TrainConfig)
    supernet: WeightSharingConfig | None = Field(None, description="for kind 'supernet'")

    @model_validator(mode="after")
    def _function_needs_target(self) -> EvaluatorConfig:
        if self.kind == "function" and not self.function:
            raise ValueError("kind 'function' needs `function: module:attr`")
        if self.kind == "supernet" and self.supernet is None:
            raise ValueError("kind 'supernet' needs `supernet: {checkpoint: PATH}` (a file "
                             "written by `nastk supernet train`)")
        if self.function and ":" not in self.function:
            raise ValueError(f"function {self.function!r} must look like 'package.module:name'")
        return self


class SearchConfig(SeededRunConfig):
    """One search: space x task x strategy x evaluator, with a budget and a run directory."""

    name: str = Field("search", min_length=1)
    space: PluginRef
    task: PluginRef | None = None
    strategy: PluginRef = Field(default_factory=lambda: PluginRef(name="evolution"))
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    evaluator: EvaluatorConfig = Field(default_factory=EvaluatorConfig)
    budget: Budget = Field(default_factory=Budget)
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig,
        description="how far each candidate trains and which continue: none (the full "
        "budget each), sh, asha or hyperband over the evaluator's resource (epochs, steps, a "
        "table's fidelities); e.g. scheduler: hyperband")
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig,
        description="local (in-process, default) or ray (a Ray cluster); not part of the "
                    "run's identity")
    keep_checkpoints: int = Field(3, ge=0, description="trained weights kept for the k best")
    constraints: dict[Literal["params", "flops", "latency_ms"],
                      tuple[float | None, float | None]] = Field(
        default_factory=dict, description="search only architectures whose costs lie in "
        "these ranges, e.g. {flops: [null, 2.0e7]} or {latency_ms: {max: 15}} (needs a "
        "model: evaluator kind train or supernet; latency_ms needs `latency: {table: FILE}`, "
        "a predicted latency, so that nothing runs to check it)")
    latency: LatencyUse | None = Field(
        None, description="predict latency_ms from a device's latency table (`nastk latency "
        "profile`) instead of timing each candidate here: {table: FILE}")

    warm_start: WarmStartUse | None = Field(
        None, description="start from earlier runs' or studies' results, each earlier task "
        "weighted by how well its ranking agrees with this one's results so far: {from: "
        "[RUN_OR_STUDY_DIR, ...], tasks: [...]} (strategies evolution, bo, predictor_guided)")
    path_filter: PathFilterUse | None = Field(
        None, description="search only the paths a fitted path filter keeps (DetOFA's pruned "
                          "space: the top keep_ratio of every cost bucket; needs a model to "
                          "cost: evaluator kind train or supernet)")

    @field_validator("constraints", mode="before")
    @classmethod
    def _range_forms(cls, v: Any) -> Any:
        """``{cost: {min: a, max: b}}`` (either bound may be left out) read as ``[a, b]``."""
        if not isinstance(v, dict):
            return v
        out: dict[Any, Any] = {}
        for name, bounds in v.items():
            if isinstance(bounds, dict):
                unknown = sorted(set(bounds) - {"min", "max"})
                if unknown:
                    raise ValueError(f"constraints.{name}: unknown bound {unknown}; give min "
                                     "and/or max, e.g. {max: 15}")
                bounds = (bounds.get("min"), bounds.get("max"))
            out[name] = bounds
        return out

    @model_validator(mode="after")
    def _latency_is_predicted(self) -> SearchConfig:
        if "latency_ms" in self.constraints and self.latency is None:
            raise ValueError("constraints.latency_ms needs a predicted latency, known before "
                             "anything runs: add `latency: {table: FILE}` (profile the device "
                             "with `nastk latency profile CONFIG --out FILE`), or constrain "
                             "params or flops")
        if self.latency is not None and self.evaluator.kind == "function":
            raise ValueError("latency: {table} predicts the latency of a model; a function "
                             "evaluator has none (use evaluator kind train or supernet)")
        return self

    @model_validator(mode="after")
    def _constraints_need_a_model(self) -> SearchConfig:
        if self.path_filter is not None and self.evaluator.kind == "function":
            raise ValueError("path_filter needs a model to cost (evaluator kind 'train' or "
                             "'supernet'); a function evaluator's costs are known only after "
                             "evaluation")
        if self.constraints and self.evaluator.kind == "function":
            raise ValueError("constraints need a model to cost (evaluator kind 'train' or "
                             "'supernet'); a function evaluator's costs are known only after "
                             "evaluation")
        return self

    @model_validator(mode="after")
    def _task_or_function(self) -> SearchConfig:
        if self.evaluator.kind in ("train", "supernet") and self.task is None:
            raise ValueError(f"evaluator kind {self.evaluator.kind!r} needs a `task` (e.g. "
                             "task: classification)")
        if self.task is None and self.objective.metric is None:
            raise ValueError("without a task, set objective.metric to a key your function "
                             "returns")
        return self

    @model_validator(mode="after")
    def _scheduler_fits(self) -> SearchConfig:
        train = self.evaluator.train
        self.executor.check_fits(self.evaluator.kind, train.epochs, train.steps)
        sch = self.scheduler
        if sch.active:
            if self.executor.scheduler != "none":
                raise ValueError("scheduler and executor.scheduler both set: keep scheduler "
                                 "(the engine's, used by every executor) and drop "
                                 "executor.scheduler")
            if self.evaluator.kind == "supernet":
                raise ValueError(f"scheduler.kind {sch.kind!r}: a weight-sharing evaluator "
                                 "trains nothing per candidate; use evaluator kind 'train' (or "
                                 "a function f(arch, resource)), or scheduler: none")
            if self.evaluator.kind == "function" and sch.max_resource is None:
                raise ValueError(f"scheduler.kind {sch.kind!r} with a function evaluator needs "
                                 "scheduler.max_resource (the full budget f(arch, resource) "
                                 "is called with)")
            if self.evaluator.kind == "train" and sch.max_resource is not None:
                full = train.steps if train.steps is not None else train.epochs
                if sch.max_resource != full:
                    raise ValueError(f"scheduler.max_resource ({sch.max_resource:g}) differs "
                                     f"from the train evaluator's full budget ({full}); leave "
                                     "it out")
        return self

    @property
    def engine_scheduler(self) -> SchedulerConfig:
        """The scheduler the engine runs: ``scheduler``, or the older ``executor.scheduler:
        asha`` (Ray only) read as ``scheduler: {kind: asha, min_resource: grace_period,
        reduction_factor}``."""
        if self.scheduler.active or self.executor.kind != "ray" or \
                self.executor.scheduler == "none":
            return self.scheduler
        return SchedulerConfig(kind="asha", min_resource=self.executor.asha.grace_period,
                               reduction_factor=self.executor.asha.reduction_factor)

    def describe(self) -> dict[str, Any]:
        """What the run is, as its store records it: space, task and strategy with their
        options, the evaluator kind, the seed and the nastk version that started it."""
        return {"space": self.space.model_dump(mode="json"),
                "task": self.task.model_dump(mode="json") if self.task else None,
                "strategy": self.strategy.model_dump(mode="json"),
                "evaluator": self.evaluator.kind, "seed": self.seed,
                "nastk_version": __version__}

    def report_meta(self) -> dict[str, Any]:
        """The settings a run report's *Run* table lists."""
        return {"space": self.space.name, "task": self.task.name if self.task else "-",
                "strategy": self.strategy.name, "evaluator": self.evaluator.kind,
                "seed": self.seed, "budget (trials)": self.budget.trials,
                "executor": self.executor.kind,
                **({"scheduler": self.engine_scheduler.kind}
                   if self.engine_scheduler.active else {}),
                **({"budget (resource)": self.budget.resource}
                   if self.budget.resource is not None else {})}

    def identity(self) -> dict[str, Any]:
        """The parts that must not change when a run is resumed (budget, name, run_dir,
        keep_checkpoints and executor may)."""
        data = self.model_dump(mode="json")
        for key in IDENTITY_EXCLUDES:
            data.pop(key, None)
        return data


class SupernetConfig(SeededRunConfig):
    """Training one supernet: a weight-sharing space, a task, and the training schedule."""

    name: str = Field("supernet", min_length=1)
    space: PluginRef
    task: PluginRef
    training: SupernetTrainConfig = Field(default_factory=SupernetTrainConfig)
    executor: SupernetExecutorConfig = Field(
        default_factory=SupernetExecutorConfig,
        description="local (this process) or ray (training.workers data-parallel workers on "
                    "Ray Train)")
    path_filter: PathFilterUse | None = Field(
        None, description="train only the paths a fitted path filter keeps (DetOFA); the "
                          "sandwich's largest and smallest paths are always trained")

    @model_validator(mode="after")
    def _workers_fit_the_batch(self) -> SupernetConfig:
        t = self.training
        if t.workers > t.batch_size:
            raise ValueError(f"training.workers ({t.workers}) exceeds training.batch_size "
                             f"({t.batch_size}), the images of one step over all workers; "
                             "raise the batch size or use fewer workers")
        return self

    @property
    def on_ray(self) -> bool:
        """Whether the training runs on Ray Train (``executor: ray`` or ``workers > 1``)."""
        return self.executor.kind == "ray" or self.training.workers > 1

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must share with a config that resumes or uses it (not the number
        of workers nor where they run)."""
        training = self.training.model_dump(mode="json", exclude=set(NOT_IDENTITY))
        out = {"space": self.space.model_dump(mode="json"),
               "task": self.task.model_dump(mode="json"),
               "training": training, "seed": self.seed}
        if self.path_filter is not None:
            out["path_filter"] = self.path_filter.model_dump(mode="json")
        return out


def parse_config(data: Any, source: str = "config", schema: type[M] = SearchConfig) -> M:
    """Validate a mapping into ``schema`` (a :class:`SearchConfig` by default), raising
    :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields (space, task, ...), got "
                          f"{type(data).__name__}")
    try:
        config = schema.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, schema=schema)) from None
    if isinstance(config, RunConfig) and source != "config":
        config._source = source
    return config


def read_yaml(path: str | Path, what: str = "config") -> tuple[Path, str, Any]:
    """``(path, text, data)`` of a YAML file; a :class:`ConfigError` naming the file when it
    is missing or not valid YAML (``what`` names the kind of file: ``config``, ``recipe``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {p} not found")
    text = p.read_text()
    try:
        return p, text, yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None


def load_config(path: str | Path, schema: type[M] = SearchConfig) -> M:
    """Read and validate a YAML config file."""
    p, _, data = read_yaml(path)
    return parse_config(data, str(p), schema)
