"""``${stage.output}`` references inside a recipe's stages: finding them, checking them against
the stages before, and substituting the outputs once they are known.

``${stage.output}`` in any string of a stage's ``config``, ``file``, ``run`` or ``options`` is
replaced by that output of an earlier stage (:data:`~nastk.pipelines.recipe.schema.OUTPUTS`
lists them per kind; a string that is exactly one reference takes the output's type);
``${recipe.run_dir}``, ``${recipe.seed}`` and ``${recipe.name}`` are the recipe's own.

Before anything runs, every reference is checked: an unknown stage, a stage that runs later or
an unknown output is a :class:`~nastk.core.errors.ConfigError` naming the stage, the reference
and what is available.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nastk.core.errors import ConfigError
from nastk.pipelines.recipe.schema import NAME_PATTERN, OUTPUTS, RECIPE_OUTPUTS, StageSpec

_REF = re.compile(r"\$\{\s*(" + NAME_PATTERN + r")\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}?")


@dataclass(frozen=True)
class Reference:
    """``${stage.key}`` found at ``where`` (a dotted path inside the stage)."""

    stage: str
    key: str
    where: str

    @property
    def text(self) -> str:
        """The reference as written in a recipe."""
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


def check_references(stages: Sequence[StageSpec], raw: Sequence[Any],
                     where: Callable[[int], str]) -> None:
    """Check every reference of every stage (``raw[i]``: stage ``i`` before substitution): it
    names the recipe or an earlier stage, and an output that stage's kind has; a ``run:`` reads
    a search stage. ``where(i)`` is how errors name stage ``i``. All errors are raised together
    as one :class:`ConfigError`."""
    names = [s.name for s in stages]
    errors: list[str] = []
    for i, spec in enumerate(stages):
        try:
            refs = find_references(raw[i])
        except ConfigError as err:
            errors.append(f"{where(i)}.{err}")
            continue
        before = names[:i]
        for ref in refs:
            at = f"{where(i)}.{ref.where}: {ref.text}"
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
            kind = stages[j].kind
            if ref.key not in OUTPUTS[kind]:
                errors.append(f"{at}: stage {ref.stage!r} ({kind}) has no output {ref.key!r}; "
                              f"its outputs: {', '.join(OUTPUTS[kind])}")
                continue
            if ref.where == "run" and kind != "search":
                errors.append(f"{at}: a {spec.kind} stage reads a search run, and stage "
                              f"{ref.stage!r} is a {kind} stage")
    if errors:
        raise ConfigError("\n".join(errors))
