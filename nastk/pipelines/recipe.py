"""Recipes: a multi-step pipeline (``nastk recipe RECIPE.yaml``) as a chain of stages, each one
nastk command (supernet training, a search, a path-filter fit, an export), fed by the outputs of
the stages before it.

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

``${stage.output}`` in any string of a stage's ``config``, ``file``, ``run`` or ``options`` is
replaced by that output of an earlier stage (:data:`OUTPUTS` lists them per kind; a string that
is exactly one reference takes the output's type); ``${recipe.run_dir}``, ``${recipe.seed}``
and ``${recipe.name}`` are the recipe's own. Merging defaults: mappings merge key by key, any
other value is replaced by the stage's; a plugin reference naming another plugin (``task:
{name: classification}`` over a ``detection`` default) replaces the default whole, options
included.

Before anything runs, every reference is checked (unknown stage, a stage that runs later, an
unknown output: a :class:`~nastk.core.errors.ConfigError` naming the stage, the reference and what
is available) and every stage is validated with its schema, the outputs of earlier stages replaced
by their predicted values (paths are known in advance: they lie in the stages' folders; numbers
and trial ids get a placeholder). So a bad last stage fails before the first one starts.

State: ``run_dir/recipe.json`` (rewritten atomically) holds, per stage, its status, the hash of
its resolved config, its resolved config, its outputs, and its start and end times;
``run_dir/recipe.yaml`` is the recipe text last run and ``run_dir/resolved.yaml`` every stage's
config as resolved so far. A stage recorded ``done`` with the same hash is skipped; a stage that
started but did not finish is run again, resuming (the runner decides how: a supernet training
from its checkpoint, a search from its store). A ``done`` stage whose resolved config changed
is refused: ``--redo STAGE`` runs it and every later stage again, after moving their folders
aside to ``run_dir/<stage>.old-<n>`` (nothing is deleted). Stage configs may not set their own
``run_dir`` (the recipe owns ``run_dir/<stage>``; a ``file:`` config's ``run_dir`` is replaced).

This module holds the format and the runner; what each kind of stage runs is given by the
caller (:mod:`nastk.cli.commands.recipe`), so the engine imports no command.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.console import Console

from nastk.config.schema import SearchConfig, SupernetConfig, format_validation_error, parse_config
from nastk.core.errors import ConfigError, NastkError, StoreError
from nastk.core.weights import write_atomic
from nastk.run import layout
from nastk.run.identity import canonical_hash, changes, describe_changes
from nastk.run.lock import lock_run_dir

__all__ = [
    "OUTPUTS",
    "STAGE_KINDS",
    "ExportOptions",
    "PathFilterFitOptions",
    "Plan",
    "Recipe",
    "RecipeInterrupted",
    "RecipeOutcome",
    "RecipeState",
    "ResolvedStage",
    "StageReport",
    "StageRunner",
    "StageSpec",
    "load_recipe",
    "run_recipe_stages",
]

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
#: ``${recipe.<key>}``
RECIPE_OUTPUTS = ("run_dir", "seed", "name")

STATE_FORMAT = "nastk.recipe/1"

#: the schema of each kind that takes a command config
CONFIG_SCHEMAS: dict[str, type[SupernetConfig] | type[SearchConfig]] = {
    "supernet_train": SupernetConfig, "search": SearchConfig}

_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_REF = re.compile(r"\$\{\s*(" + _NAME + r")\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}?")


# -- the format ---------------------------------------------------------------------------------
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


OPTION_SCHEMAS: dict[str, type[BaseModel]] = {"path_filter_fit": PathFilterFitOptions,
                                               "export": ExportOptions}


class StageSpec(BaseModel):
    """One stage of a recipe."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=f"^{_NAME}$", description="unique; also the folder name")
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

    name: str = Field("recipe", pattern=f"^{_NAME}$")
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
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    def index(self, name: str, flag: str = "stage") -> int:
        """The position of stage ``name`` (a :class:`ConfigError` listing the stages if none)."""
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise ConfigError(f"{flag} {name}: the recipe has no such stage; its stages: "
                          f"{', '.join(s.name for s in self.stages)}")


# -- references and merging ---------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """``${stage.key}`` found at ``where`` (a dotted path inside the stage)."""

    stage: str
    key: str
    where: str

    @property
    def text(self) -> str:
        return f"${{{self.stage}.{self.key}}}"


def find_references(value: Any, where: str = "") -> list[Reference]:
    """Every ``${stage.key}`` in the strings of ``value`` (dict values and list items, at any
    depth), with where it stands; a ``${...}`` that is not of that form is a ConfigError."""
    out: list[Reference] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += find_references(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += find_references(v, f"{where}.{i}" if where else str(i))
    elif isinstance(value, str):
        for m in _ANY_REF.finditer(value):
            ref = _REF.fullmatch(m.group(0))
            if ref is None:
                raise ConfigError(f"{where}: {m.group(0)!r} is not a reference; write "
                                  "${stage.output}, e.g. ${pretrain.checkpoint}")
            out.append(Reference(ref.group(1), ref.group(2), where))
    return out


def substitute(value: Any, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    """``value`` with every reference replaced from ``outputs`` (``{stage: {key: value}}``): a
    string that is exactly one reference becomes the output itself, references inside longer
    strings are replaced by their text. References not in ``outputs`` are left as they are."""
    if isinstance(value, dict):
        return {k: substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REF.fullmatch(value.strip())
    if whole is not None:
        stage, key = whole.group(1), whole.group(2)
        if stage in outputs and key in outputs[stage]:
            return copy.deepcopy(outputs[stage][key])
        return value

    def one(m: re.Match[str]) -> str:
        stage, key = m.group(1), m.group(2)
        if stage in outputs and key in outputs[stage]:
            v = outputs[stage][key]
            return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
        return m.group(0)

    return _REF.sub(one, value)


def merge(base: Any, over: Any, top: bool = True) -> Any:
    """``over`` deep-merged over ``base``: mappings key by key, anything else replaced. Below the
    top level, a mapping naming another plugin (a different ``name``) replaces ``base`` whole,
    and ``{options: ...}`` over a plugin given by name alone keeps that name."""
    if isinstance(base, str) and isinstance(over, dict) and not top and "name" not in over:
        base = {"name": base}
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return copy.deepcopy(over)
    if not top and "name" in base and "name" in over and base["name"] != over["name"]:
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v, top=False) if k in out else copy.deepcopy(v)
    return out


def _json_safe(value: Any) -> Any:
    """Outputs as JSON data: paths as strings, NaN as None."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


def predicted_outputs(kind: str, stage_dir: Path) -> dict[str, Any]:
    """What a stage of ``kind`` in ``stage_dir`` will output: its paths exactly, placeholders
    of the right type for numbers and trial ids (to validate later stages in advance)."""
    d = str(stage_dir)
    if kind == "supernet_train":
        return {"run_dir": d, "checkpoint": str(stage_dir / layout.SUPERNET_CHECKPOINT)}
    if kind == "search":
        return {"run_dir": d, "store": str(stage_dir / layout.STORE_FILE),
                "report": str(stage_dir / layout.REPORT_MD), "best_trial": 1, "best_score": 0.5}
    if kind == "path_filter_fit":
        return {"file": str(stage_dir / layout.FILTER_FILE), "tau": 0.5}
    if kind == "export":
        return {"dir": d, "trials": [1]}
    raise ValueError(kind)


# -- resolution ---------------------------------------------------------------------------------
@dataclass
class ResolvedStage:
    """A stage with its defaults merged and its references replaced: what its runner gets."""

    index: int
    spec: StageSpec
    dir: Path
    #: the resolved stage: ``{"kind", "config"}`` or ``{"kind", "run", "options"}``
    data: dict[str, Any]
    #: the validated command config (supernet_train, search)
    config: SupernetConfig | SearchConfig | None = None
    #: the search run read (path_filter_fit, export)
    run: Path | None = None
    #: the validated options (path_filter_fit, export)
    options: PathFilterFitOptions | ExportOptions | None = None
    #: the recipe's seed (the default of ``options.seed``)
    seed: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def digest(self) -> str:
        return canonical_hash(self.data)


@dataclass
class Plan:
    """A loaded recipe: every stage's raw data (defaults merged, references still in place)."""

    recipe: Recipe
    source: str
    text: str
    #: per stage: ``{"config": ...}`` or ``{"run": ..., "options": ...}``, before substitution
    raw: list[dict[str, Any]]

    @property
    def run_dir(self) -> Path:
        return self.recipe.resolved_run_dir()

    def stage_dir(self, index: int) -> Path:
        return self.run_dir / self.recipe.stages[index].name

    def recipe_outputs(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "seed": self.recipe.seed,
                "name": self.recipe.name}

    def where(self, index: int, part: str = "") -> str:
        name = self.recipe.stages[index].name
        return f"{self.source}: stages.{name}" + (f".{part}" if part else "")

    def resolve(self, index: int, outputs: Mapping[str, Mapping[str, Any]]) -> ResolvedStage:
        """Stage ``index`` with ``outputs`` (``{stage: {key: value}}``, ``recipe`` included)
        substituted and validated by its schema (ConfigError naming the recipe and the stage)."""
        spec = self.recipe.stages[index]
        raw = self.raw[index]
        data: dict[str, Any] = {"kind": spec.kind, **substitute(raw, outputs)}
        left = find_references(data)
        if left:  # only when called with too few outputs: a bug of the caller
            raise ConfigError(f"{self.where(index)}: unresolved {left[0].text} at "
                              f"{left[0].where}")
        stage = ResolvedStage(index, spec, self.stage_dir(index), data, seed=self.recipe.seed)
        if spec.kind in CONFIG_SCHEMAS:
            stage.config = parse_config(data["config"], self.where(index, "config"),
                                        CONFIG_SCHEMAS[spec.kind])
        else:
            where = self.where(index)
            run = data.get("run")
            if not isinstance(run, str) or not run:
                raise ConfigError(f"{where}.run: expected the path of a search run, got "
                                  f"{run!r}")
            stage.run = Path(run)
            try:
                stage.options = OPTION_SCHEMAS[spec.kind].model_validate(data["options"])
            except ValidationError as err:
                raise ConfigError(format_validation_error(err, f"{where}.options")) from None
        return stage


def _read_stage_file(spec: StageSpec, base: Path, where: str) -> dict[str, Any]:
    assert spec.file is not None
    if find_references(spec.file, "file"):
        raise ConfigError(f"{where}.file: {spec.file!r}: a config file is read before any "
                          "stage runs; it cannot refer to a stage's outputs")
    path = Path(spec.file)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ConfigError(f"{where}.file: {path} not found (relative paths start at the "
                          "recipe file's folder)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}.file: {path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}.file: {path}: expected a mapping of fields, got "
                          f"{type(data).__name__}")
    data.pop("run_dir", None)  # the recipe owns run_dir/<stage>
    return data


def _raw_stage(recipe: Recipe, index: int, base: Path, source: str) -> dict[str, Any]:
    spec = recipe.stages[index]
    where = f"{source}: stages.{spec.name}"
    if spec.kind not in CONFIG_SCHEMAS:
        return {"run": spec.run, "options": copy.deepcopy(spec.options)}
    schema = CONFIG_SCHEMAS[spec.kind]
    if spec.config is not None:
        own = copy.deepcopy(spec.config)
        if "run_dir" in own:
            raise ConfigError(f"{where}.config: run_dir: the recipe runs every stage in "
                              f"run_dir/<stage name> ({recipe.resolved_run_dir() / spec.name}); "
                              "remove it (set the recipe's run_dir to move them all)")
    else:
        own = _read_stage_file(spec, base, where)
    start = {"name": f"{recipe.name}-{spec.name}", "seed": recipe.seed,
             "plugins": list(recipe.plugins)}
    defaults = {k: v for k, v in recipe.defaults.items() if k in schema.model_fields}
    config = merge(merge(start, defaults), own)
    config["run_dir"] = str(recipe.resolved_run_dir() / spec.name)
    return {"config": config}


def _check_references(plan: Plan) -> None:
    names = [s.name for s in plan.recipe.stages]
    errors: list[str] = []
    for i, spec in enumerate(plan.recipe.stages):
        try:
            refs = find_references(plan.raw[i])
        except ConfigError as err:
            errors.append(f"{plan.where(i)}.{err}")
            continue
        before = names[:i]
        for ref in refs:
            at = f"{plan.where(i)}.{ref.where}: {ref.text}"
            if ref.stage == "recipe":
                if ref.key not in RECIPE_OUTPUTS:
                    errors.append(f"{at}: the recipe has no output {ref.key!r}; it has "
                                  f"{', '.join(RECIPE_OUTPUTS)}")
                continue
            avail = (f"stages before {spec.name!r}: {', '.join(before)}" if before
                     else f"{spec.name!r} is the first stage")
            if ref.stage not in names:
                errors.append(f"{at}: no stage named {ref.stage!r} ({avail}; and recipe."
                              f"{'/'.join(RECIPE_OUTPUTS)})")
                continue
            j = names.index(ref.stage)
            if j >= i:
                what = "is this stage" if j == i else f"runs after {spec.name!r}"
                errors.append(f"{at}: stage {ref.stage!r} {what}; a stage can use only the "
                              f"outputs of the stages before it ({avail})")
                continue
            kind = plan.recipe.stages[j].kind
            if ref.key not in OUTPUTS[kind]:
                errors.append(f"{at}: stage {ref.stage!r} ({kind}) has no output {ref.key!r}; "
                              f"its outputs: {', '.join(OUTPUTS[kind])}")
                continue
            if ref.where == "run" and kind != "search":
                errors.append(f"{at}: a {spec.kind} stage reads a search run, and stage "
                              f"{ref.stage!r} is a {kind} stage")
    if errors:
        raise ConfigError("\n".join(errors))


def load_recipe(path: str | Path,
                check: Callable[[ResolvedStage], None] | None = None) -> Plan:
    """Read a recipe, check its references and validate every stage before anything runs:
    each stage's config is parsed by its schema with the earlier stages' predicted outputs in
    place of their references, then passed to ``check`` (the runners' own checks, e.g. plugin
    options). All stages' errors are raised together as one :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file {p} not found")
    text = p.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a recipe (name, run_dir, stages, ...), got "
                          f"{type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(p))) from None
    raw = [_raw_stage(recipe, i, p.parent, str(p)) for i in range(len(recipe.stages))]
    plan = Plan(recipe, str(p), text, raw)
    _check_references(plan)
    predicted: dict[str, dict[str, Any]] = {"recipe": plan.recipe_outputs()}
    for i, spec in enumerate(recipe.stages):
        predicted[spec.name] = predicted_outputs(spec.kind, plan.stage_dir(i))
    errors: list[str] = []
    for i in range(len(recipe.stages)):
        try:
            stage = plan.resolve(i, predicted)
            if check is not None:
                check(stage)
        except NastkError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError("\n".join(errors))
    return plan


# -- state --------------------------------------------------------------------------------------
class RecipeState:
    """``run_dir/recipe.json``: per stage its ``kind``, ``status`` (``running``: started, not
    finished; ``done``), ``hash`` and ``resolved`` config, ``outputs``, ``started`` and
    ``finished`` times, ``wall_s`` (summed over sessions), ``sessions`` and the last ``error``."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {"format": STATE_FORMAT, "stages": {}}

    @classmethod
    def load(cls, run_dir: Path) -> RecipeState:
        path = run_dir / layout.RECIPE_STATE
        if not path.is_file():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: cannot read the recipe's state ({err}); move it aside to "
                             "start the recipe afresh") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StoreError(f"{path} is not a nastk recipe state (format {STATE_FORMAT!r})")
        return cls(path, data)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.data["stages"]

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def save(self) -> None:
        write_atomic(self.path, (json.dumps(self.data, indent=2, allow_nan=False) + "\n")
                     .encode())

    def start(self, stage: ResolvedStage) -> None:
        old = self.stages.get(stage.name) or {}
        self.stages[stage.name] = {
            "kind": stage.kind, "status": "running", "hash": stage.digest,
            "resolved": stage.data, "outputs": None, "started": time.time(), "finished": None,
            "wall_s": float(old.get("wall_s") or 0.0), "sessions": int(old.get("sessions") or 0)
            + 1}
        self.save()

    def stop(self, name: str, wall_s: float, outputs: dict[str, Any] | None = None,
             error: str | None = None) -> None:
        entry = self.stages[name]
        entry["wall_s"] = float(entry.get("wall_s") or 0.0) + wall_s
        if outputs is not None:
            entry.update(status="done", outputs=_json_safe(outputs), finished=time.time(),
                         error=None)
        else:
            entry["error"] = error
        self.save()

    def forget(self, name: str) -> None:
        self.stages.pop(name, None)
        self.save()


# -- the runner ---------------------------------------------------------------------------------
@dataclass
class StageRunner:
    """What a kind of stage runs: ``run(stage, console, progress)`` runs it (resuming what an
    earlier, cut-off session of the same stage left in its folder) and returns its outputs (the
    keys of :data:`OUTPUTS`); ``check(stage)`` validates a stage further before anything runs
    (e.g. its plugins' options); ``summary(outputs)`` is the text of the summary table's
    outputs column."""

    run: Callable[[ResolvedStage, Console, bool], dict[str, Any]]
    check: Callable[[ResolvedStage], None] | None = None
    summary: Callable[[dict[str, Any]], str] | None = None


@dataclass
class StageReport:
    """One row of the recipe's summary."""

    name: str
    kind: str
    status: str  # "ran", "skipped" (done before), "not run"
    wall_s: float | None = None
    outputs: dict[str, Any] | None = None
    text: str = ""


@dataclass
class RecipeOutcome:
    """What :func:`run_recipe_stages` did."""

    run_dir: Path
    state: Path
    stages: list[StageReport] = field(default_factory=list)


class RecipeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; ``stage`` names it (finished stages are recorded)."""

    def __init__(self, stage: str, run_dir: Path) -> None:
        super().__init__(stage)
        self.stage = stage
        self.run_dir = run_dir


def _with_hint(err: NastkError, hint: str) -> NastkError:
    """``err`` again, of its own type, with ``hint`` on a line of its own."""
    try:
        return type(err)(f"{err}\n{hint}")
    except Exception:  # a subclass with another constructor: keep its text
        return NastkError(f"{err}\n{hint}")


def _moved_aside(folder: Path) -> Path:
    n = 1
    while folder.with_name(f"{folder.name}.old-{n}").exists():
        n += 1
    target = folder.with_name(f"{folder.name}.old-{n}")
    folder.rename(target)
    return target


def _check_recorded_outputs(plan: Plan, index: int, outputs: dict[str, Any]) -> None:
    spec = plan.recipe.stages[index]
    for key, kind in OUTPUTS[spec.kind].items():
        value = outputs.get(key)
        if kind == "path" and (value is None or not Path(value).exists()):
            raise StoreError(f"stage {spec.name!r} is recorded done, but its {key} {value} is "
                             f"missing; run it again with `--redo {spec.name}`")


def _write_resolved(plan: Plan, resolved: dict[str, dict[str, Any]]) -> None:
    stages = []
    for i, spec in enumerate(plan.recipe.stages):
        data = resolved.get(spec.name) or {"kind": spec.kind, **plan.raw[i]}
        stages.append({"name": spec.name, **data})
    doc = {"name": plan.recipe.name, "run_dir": str(plan.run_dir), "seed": plan.recipe.seed,
           "stages": stages}
    text = ("# every stage as resolved (references of stages not run yet are left in place)\n"
            + yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False))
    write_atomic(plan.run_dir / layout.RESOLVED_YAML, text.encode())


def run_recipe_stages(plan: Plan, runners: Mapping[str, StageRunner], *,
                      redo: str | None = None, until: str | None = None,
                      only: str | None = None, console: Console | None = None,
                      progress: bool = True) -> RecipeOutcome:
    """Run a loaded recipe's stages in order, skipping those recorded done with the same
    resolved config, resuming the one that was cut off, and recording each in
    ``run_dir/recipe.json``. ``redo``: run that stage and every later one again (their folders
    moved aside to ``<stage>.old-<n>``); ``until``: stop after that stage; ``only``: run just
    that stage (the stages before it must be done). Holds the lock of the recipe's run_dir."""
    console = console or Console(stderr=True)
    recipe = plan.recipe
    names = [s.name for s in recipe.stages]
    n = len(names)
    last = n - 1
    first_run = 0
    if until is not None:
        last = recipe.index(until, "--until")
    if only is not None:
        first_run = last = recipe.index(only, "--only")
        if until is not None:
            raise ConfigError("--only and --until do not go together: --only runs one stage")
    redo_from = recipe.index(redo, "--redo") if redo is not None else None
    run_dir = plan.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"recipe run_dir {run_dir} is a file, not a folder")
    lock = lock_run_dir(run_dir, create=True)  # one live process per recipe
    try:
        state = RecipeState.load(run_dir)
        write_atomic(run_dir / layout.RECIPE_COPY, plan.text.encode())
        if redo_from is not None:
            for i in range(redo_from, n):
                folder = plan.stage_dir(i)
                if folder.exists():
                    moved = _moved_aside(folder)
                    console.print(f"--redo {redo}: moved {folder} aside to {moved}",
                                  highlight=False)
                if state.entry(names[i]) is not None:
                    state.forget(names[i])
        outcome = RecipeOutcome(run_dir, state.path)
        outputs: dict[str, dict[str, Any]] = {"recipe": plan.recipe_outputs()}
        resolved: dict[str, dict[str, Any]] = {}
        for i, spec in enumerate(recipe.stages):
            header = f"[{i + 1}/{n}] {spec.name} ({spec.kind})"
            if i > last:
                outcome.stages.append(StageReport(spec.name, spec.kind, "not run"))
                continue
            stage = plan.resolve(i, outputs)
            resolved[spec.name] = stage.data
            entry = state.entry(spec.name)
            runner = runners[spec.kind]
            if entry is not None and entry.get("status") == "done":
                if entry.get("hash") != stage.digest:
                    shown = describe_changes(changes(entry.get("resolved") or {}, stage.data),
                                             most=4)
                    raise ConfigError(
                        f"stage {spec.name!r} is done, but its resolved config changed since it "
                        f"ran ({shown or 'see ' + str(state.path)}). To run it again with the "
                        f"new config, pass `--redo {spec.name}` (moves {plan.stage_dir(i)} and "
                        "the folders of the stages after it aside, to <stage>.old-<n>), or "
                        f"delete {plan.stage_dir(i)} and its entry in {state.path}")
                _check_recorded_outputs(plan, i, entry["outputs"])
                outputs[spec.name] = entry["outputs"]
                console.print(f"[{i + 1}/{n}] stage {spec.name}: done (skipped)", highlight=False)
                text = runner.summary(entry["outputs"]) if runner.summary else ""
                outcome.stages.append(StageReport(spec.name, spec.kind, "skipped",
                                                  entry.get("wall_s"), entry["outputs"], text))
                continue
            if i < first_run:
                raise ConfigError(f"--only {only}: stage {spec.name!r} before it has not "
                                  f"finished; run the recipe with `--until {spec.name}` first")
            continuing = entry is not None or stage.dir.exists()
            again = " (continuing an earlier session)" if continuing else ""
            console.print(f"[bold]{header}[/bold] -> {stage.dir}{again}", highlight=False)
            state.start(stage)
            _write_resolved(plan, resolved)
            t0 = time.perf_counter()
            try:
                outs = runner.run(stage, console, progress)
            except KeyboardInterrupt:
                state.stop(spec.name, time.perf_counter() - t0, error="interrupted")
                raise RecipeInterrupted(spec.name, run_dir) from None
            except BaseException as err:
                state.stop(spec.name, time.perf_counter() - t0,
                           error=f"{type(err).__name__}: {err}")
                if continuing and isinstance(err, NastkError):
                    raise _with_hint(err, f"(stage {spec.name!r} was continuing what an "
                                          f"earlier session left in {stage.dir}; to start it "
                                          f"afresh, pass `--redo {spec.name}`)") from err
                raise
            wall = time.perf_counter() - t0
            outs = _json_safe(outs)
            missing = [k for k in OUTPUTS[spec.kind] if k not in outs]
            if missing:
                raise StoreError(f"stage {spec.name!r}: its runner gave no {missing}")
            state.stop(spec.name, wall, outputs=outs)
            outputs[spec.name] = outs
            text = runner.summary(outs) if runner.summary else ""
            outcome.stages.append(StageReport(spec.name, spec.kind, "ran",
                                              state.stages[spec.name]["wall_s"], outs, text))
        _write_resolved(plan, resolved)
        return outcome
    finally:
        lock.release()
