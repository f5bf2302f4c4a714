"""From a recipe file to a checked :class:`Plan`: the recipe's defaults merged into every stage
config, each stage resolved (references substituted, validated by its schema) into a
:class:`ResolvedStage`, and :func:`load_recipe`, which validates every stage before anything
runs.

Merging defaults: mappings merge key by key, any other value is replaced by the stage's; a
plugin reference naming another plugin (``task: {name: classification}`` over a ``detection``
default) replaces the default whole, options included.

Every stage is validated before the first one runs, with the outputs of the earlier stages
replaced by their predicted values (:func:`predicted_outputs`: paths are known in advance, they
lie in the stages' folders; numbers and trial ids get a placeholder). So a bad last stage fails
before the first one starts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nastk.config.schema import (
    SearchConfig,
    SupernetConfig,
    format_validation_error,
    parse_config,
    read_yaml,
)
from nastk.core.errors import ConfigError, NastkError
from nastk.pipelines.recipe.references import check_references, find_references, substitute
from nastk.pipelines.recipe.schema import (
    CONFIG_SCHEMAS,
    OPTION_SCHEMAS,
    ExportOptions,
    PathFilterFitOptions,
    Recipe,
    StageSpec,
)
from nastk.run import layout
from nastk.run.identity import canonical_hash


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


def stage_where(source: str, name: str, part: str = "") -> str:
    """How errors name stage ``name`` (or its ``part``) of the recipe read from ``source``."""
    return f"{source}: stages.{name}" + (f".{part}" if part else "")


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
        """The hash of the resolved stage: a done stage with another digest has changed."""
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
        """The folder stage ``index`` runs in: ``run_dir/<stage name>``."""
        return self.run_dir / self.recipe.stages[index].name

    def recipe_outputs(self) -> dict[str, Any]:
        """What ``${recipe.<key>}`` stands for."""
        return {"run_dir": str(self.run_dir), "seed": self.recipe.seed,
                "name": self.recipe.name}

    def where(self, index: int, part: str = "") -> str:
        """How errors name stage ``index`` (or its ``part``)."""
        return stage_where(self.source, self.recipe.stages[index].name, part)

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
    where = stage_where(source, spec.name)
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


def load_recipe(path: str | Path,
                check: Callable[[ResolvedStage], None] | None = None) -> Plan:
    """Read a recipe, check its references and validate every stage before anything runs:
    each stage's config is parsed by its schema with the earlier stages' predicted outputs in
    place of their references, then passed to ``check`` (the runners' own checks, e.g. plugin
    options). All stages' errors are raised together as one :class:`ConfigError`."""
    p, text, data = read_yaml(path, "recipe")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a recipe (name, run_dir, stages, ...), got "
                          f"{type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(p))) from None
    raw = [_raw_stage(recipe, i, p.parent, str(p)) for i in range(len(recipe.stages))]
    plan = Plan(recipe, str(p), text, raw)
    check_references(recipe.stages, plan.raw, plan.where)
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
