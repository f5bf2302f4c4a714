"""Training settings searched with the architecture: a space's *hyperparameter dimensions*
(:attr:`~nastk.space.search_space.SearchSpace.hyperparameters`, e.g. ``lr`` and
``weight_decay``), each named after a per-candidate field of the train evaluator's settings
(:class:`~nastk.evaluation.train.TrainConfig`). The names and ranges are checked once, before
any trial; each candidate is then trained with the settings updated by its values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from nastk.core.errors import ConfigError
from nastk.core.options import format_validation_error
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

__all__ = ["RUN_WIDE_FIELDS", "check_hyperparameters", "hyperparameter_fields",
           "settings_for"]

#: training-settings fields a space may not declare as hyperparameter dimensions: the budget
#: (a scheduler's resource), where and how the run computes, and how candidates are scored are
#: the run's, the same for every candidate
RUN_WIDE_FIELDS = frozenset({"epochs", "steps", "device", "precision", "num_threads", "latency",
                             "latency_repeats", "eval_split", "init"})


def hyperparameter_fields(settings: type[BaseModel]) -> list[str]:
    """The fields of ``settings`` (a training-settings model) that a hyperparameter dimension
    may name."""
    return [f for f in settings.model_fields if f not in RUN_WIDE_FIELDS]


def _range_values(dim: Any) -> list[Any]:
    """Values that span a dimension's range: a range's ends, a categorical's choices; none for
    other kinds."""
    if hasattr(dim, "choices"):
        return list(dim.choices)
    if hasattr(dim, "low") and hasattr(dim, "high"):
        return [dim.low, dim.high]
    return []


def check_hyperparameters(space: SearchSpace, config: BaseModel, where: str) -> tuple[str, ...]:
    """The space's hyperparameter dimensions, after checking that each exists, names a
    per-candidate field of ``config``'s model and spans values that field accepts; a
    :class:`ConfigError` naming the dimension and the valid fields otherwise."""
    names = tuple(space.hyperparameters or ())
    if not names:
        return names
    model = type(config)
    valid = hyperparameter_fields(model)
    head = f"{where}: search space {space.name!r} declares"
    dims = {d.name: d for d in space.dimensions}
    if len(set(names)) != len(names):
        raise ConfigError(f"{head} hyperparameters {list(names)} with a dimension named twice")
    for name in names:
        if name not in dims:
            raise ConfigError(f"{head} hyperparameter {name!r}, but it has no dimension "
                              f"{name!r} (its dimensions: {sorted(dims)})")
        if name not in valid:
            why = ("is set once for the whole run, not per candidate"
                   if name in RUN_WIDE_FIELDS else "is not a training setting")
            raise ConfigError(f"{head} dimension {name!r} as a hyperparameter, but {name!r} "
                              f"{why}; a hyperparameter dimension must be named after one of "
                              f"the training settings (TrainConfig fields): {', '.join(valid)}")
        for value in _range_values(dims[name]):
            try:
                model.model_validate({**dict(config), name: value})
            except ValidationError as err:
                raise ConfigError(
                    f"{head} dimension {name!r} as a hyperparameter, but its value {value!r} "
                    f"is not a valid training setting: "
                    f"{format_validation_error(err, where=where)}") from None
    return names


def settings_for(config: BaseModel, names: tuple[str, ...], arch: Architecture) -> Any:
    """``config`` itself when ``arch`` has none of the dimensions ``names`` (a space without
    hyperparameters, or all of them inactive), else a validated copy updated by its values;
    a :class:`ConfigError` for a value the field refuses."""
    update = {n: arch[n] for n in names if n in arch}
    if not update:
        return config
    try:
        return type(config).model_validate({**dict(config), **update})
    except ValidationError as err:
        raise ConfigError("hyperparameter dimensions: " + format_validation_error(err)) from None
