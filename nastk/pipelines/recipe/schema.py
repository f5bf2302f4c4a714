"""The recipe file's format: :class:`Recipe`, its stages (:class:`StageSpec`), the options of the
stage kinds that take flags instead of a config, and what each kind of stage outputs.

A recipe file::

    name: detofa
    run_dir: runs/detofa          # default runs/<name>; stage S runs in run_dir/S
    seed: 0                       # default seed of every stage config (and path-filter fit)
    plugins: []                   # default plugins of every stage config
    defaults:                     # merged (deep, the stage wins) into every supernet_train and
      space: ofa_mbv3             # search config; a key goes to the kinds whose schema has it
      task: {name: detection, options: {...}}
    stages:
      - name: pretrain
        kind: supernet_train      # supernet_train | search | path_filter_fit | export
        config: {task: {name: classification}, training: {...}}   # or file: pretrain.yaml
      - name: sample
        kind: search
        config: {evaluator: {kind: supernet, supernet: {checkpoint: "${pretrain.checkpoint}"}}}
      - name: filter
        kind: path_filter_fit
        run: "${sample.run_dir}"
        options: {cost: flops, buckets: 4, holdout: 0.2}
      - name: export
        kind: export
        run: "${sample.run_dir}"
        options: {front: true}

A ``supernet_train`` or ``search`` stage carries its command's config (``config:`` inline or
``file:``); a ``path_filter_fit`` or ``export`` stage reads a search run (``run:``) with its
command's flags as ``options:``. Stage configs may not set their own ``run_dir``: the recipe
owns ``run_dir/<stage>`` (a ``file:`` config's ``run_dir`` is replaced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nastk.config.schema import SearchConfig, SupernetConfig
from nastk.core.errors import ConfigError

StageKind = Literal["supernet_train", "search", "path_filter_fit", "export"]
STAGE_KINDS: tuple[str, ...] = ("supernet_train", "search", "path_filter_fit", "export")

#: the outputs of each kind of stage, and their JSON types
OUTPUTS: dict[str, dict[str, str]] = {
    "supernet_train": {"run_dir": "path", "checkpoint": "path"},
    "search": {"run_dir": "path", "store": "path", "report": "path", "best_trial": "int",
               "best_score": "float"},
    "path_filter_fit": {"file": "path", "tau": "float"},
    "export": {"dir": "path", "trials": "list"},
}
#: the recipe's own outputs: ``${recipe.<key>}``
RECIPE_OUTPUTS = ("run_dir", "seed", "name")

#: the schema of each kind that takes a command config
CONFIG_SCHEMAS: dict[str, type[SupernetConfig] | type[SearchConfig]] = {
    "supernet_train": SupernetConfig, "search": SearchConfig}

#: a recipe's or a stage's name (a stage's is also its folder's)
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"


class PathFilterFitOptions(BaseModel):
    """``options:`` of a ``path_filter_fit`` stage: the flags of `nastk path-filter fit` (the
    file is always ``run_dir/<stage>/filter.pt``)."""

    model_config = ConfigDict(extra="forbid")

    cost: str = Field("flops", description="recorded cost that defines the buckets")
    buckets: int = Field(5, ge=1, description="cost buckets")
    holdout: float = Field(0.2, ge=0.0, lt=1.0, description="share of the trials held out to "
                                                             "measure the ranking")
    seed: int | None = Field(None, description="default: the recipe's seed")
    filter: dict[str, Any] = Field(default_factory=dict,
                                   description="options of the path_filter plugin itself")


class ExportOptions(BaseModel):
    """``options:`` of an ``export`` stage: the flags of `nastk export` (the output folder is
    always ``run_dir/<stage>``)."""

    model_config = ConfigDict(extra="forbid")

    front: bool = Field(False, description="export every trial on the run's Pareto front "
                                           "(trial_<id>/ folders and front.json)")
    trial: int | None = Field(None, description="export this trial instead of the best")

    @model_validator(mode="after")
    def _one_choice(self) -> ExportOptions:
        if self.front and self.trial is not None:
            raise ValueError("front: true exports the whole Pareto front; drop trial, or set "
                             "front: false")
        return self


#: the options schema of each kind that takes flags
OPTION_SCHEMAS: dict[str, type[BaseModel]] = {"path_filter_fit": PathFilterFitOptions,
                                               "export": ExportOptions}


class StageSpec(BaseModel):
    """One stage of a recipe, as written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=f"^{NAME_PATTERN}$", description="unique; also the folder name")
    kind: StageKind
    config: dict[str, Any] | None = Field(
        None, description="supernet_train / search: the command's config, inline")
    file: str | None = Field(None, description="supernet_train / search: the command's config "
                                               "file instead (relative to the recipe file)")
    run: str | None = Field(None, description="path_filter_fit / export: the search run to "
                                              "read, e.g. ${sample.run_dir}")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="path_filter_fit / export: the command's flags")

    @field_validator("name")
    @classmethod
    def _not_recipe(cls, name: str) -> str:
        if name == "recipe":
            raise ValueError("'recipe' is reserved (${recipe.run_dir}); name the stage "
                             "otherwise")
        return name

    @model_validator(mode="after")
    def _fields_of_kind(self) -> StageSpec:
        if self.kind in CONFIG_SCHEMAS:
            if (self.config is None) == (self.file is None):
                raise ValueError(f"a {self.kind} stage needs its command's config: `config:` "
                                 "inline or `file:` a YAML file (one of them)")
            if self.run is not None or self.options:
                raise ValueError(f"a {self.kind} stage takes `config` or `file`, not `run` / "
                                 "`options` (those are for path_filter_fit and export)")
        else:
            if self.run is None:
                raise ValueError(f"a {self.kind} stage needs `run:` the search run it reads, "
                                 "e.g. run: ${sample.run_dir}")
            if self.config is not None or self.file is not None:
                raise ValueError(f"a {self.kind} stage takes `run` and `options`, not "
                                 "`config` / `file`")
        return self


class Recipe(BaseModel):
    """A recipe file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("recipe", pattern=f"^{NAME_PATTERN}$")
    run_dir: Path | None = Field(None, description="defaults to runs/<name>")
    seed: int = 0
    plugins: list[str] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1)

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, defaults: dict[str, Any]) -> dict[str, Any]:
        known = set(SupernetConfig.model_fields) | set(SearchConfig.model_fields)
        if "run_dir" in defaults:
            raise ValueError("run_dir: the recipe puts every stage in run_dir/<stage name>; set "
                             "the recipe's own run_dir instead")
        bad = sorted(k for k in defaults if k not in known)
        if bad:
            raise ValueError(f"unknown fields {bad}: defaults take fields of supernet and search "
                             f"configs ({', '.join(sorted(known - {'run_dir'}))})")
        return defaults

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        seen: set[str] = set()
        for s in self.stages:
            if s.name in seen:
                raise ValueError(f"two stages are named {s.name!r}; stage names must be unique")
            seen.add(s.name)
        return self

    def resolved_run_dir(self) -> Path:
        """The recipe's folder: ``run_dir``, or ``runs/<name>`` when it is not set."""
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    def index(self, name: str, flag: str = "stage") -> int:
        """The position of stage ``name`` (a :class:`ConfigError` listing the stages if none)."""
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise ConfigError(f"{flag} {name}: the recipe has no such stage; its stages: "
                          f"{', '.join(s.name for s in self.stages)}")
