"""Validating options, and the one way nastk words a validation error.

Configs (a search, a supernet training, a study, a recipe and its stages) and the options of
every plugin (a space, a task, a strategy, a predictor) are pydantic models. Whatever fails,
the error names the file (``source``), the field's path (``where`` and the error's location),
what is wrong and the value given::

    exp.yaml: budget.trials: Input should be greater than 0 (got -3)
    exp.yaml: strategy.options: invalid options for strategy 'evolution':
      strategy.options.population: Input should be greater than or equal to 2 (got 1)

A plugin's options are validated once: :func:`nastk.core.registry.instantiate` validates them
with :func:`validate_options` and constructs the plugin inside :func:`prevalidated`, so a
plugin whose constructor takes its options through :func:`options_of` receives the validated
model without validating it again (constructed directly, it validates them itself, with the
same wording).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, ValidationError, model_serializer

from nastk.core.errors import ConfigError

__all__ = ["QuietDefaults", "format_validation_error", "omit_quiet_defaults", "options_of",
           "prevalidated", "validate_options"]

M = TypeVar("M", bound=BaseModel)

_UNKNOWN_FIELD = "unknown field; check its spelling against the documented fields"


def _fields_at(schema: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model at ``loc`` inside ``schema`` (following nested models),
    or ``[]`` where the path leaves the models (lists, mappings, unions)."""
    model = schema
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


#: pydantic's names of the members of a union, as they appear in an error's location
_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "none", "list", "dict", "tuple", "set",
                        "bytes"})
#: errors that only say the input is not of a union member's type
_MISMATCH = ("literal_error", "model_type", "dataclass_type", "model_attributes_type",
             "dict_type", "is_instance_of")


def _is_member_tag(part: Any) -> bool:
    """Whether a location part names a union member (``literal['a','b']``,
    ``function-after[_check(), Model]``, ``int``, ``Model``) rather than a field."""
    return isinstance(part, str) and ("[" in part or "(" in part or part in _TYPE_TAGS
                                      or (part[:1].isupper() and part.isidentifier()))


def _merged(errors: list[Any]) -> list[Any]:
    """Errors of union fields in one voice: the members' tags left out of the locations; an
    error that only says the input is not some member's type dropped when another member got
    further into the input (it was meant as that member); what is left at one location joined
    into one message."""
    out: list[Any] = []
    for e in errors:
        loc = tuple(p for p in e["loc"] if not _is_member_tag(p))
        out.append({**e, "loc": loc})
    def mismatch(e: Any) -> bool:
        return e["type"].endswith(("_type", "_parsing")) or e["type"] in _MISMATCH

    def superseded(e: Any) -> bool:
        # a member took the input and found something wrong inside it (an error deeper
        # down, or its own check at the same place): the other members' "not my type" is noise
        n = len(e["loc"])
        return mismatch(e) and any(d["loc"][:n] == e["loc"] and (
            len(d["loc"]) > n or not mismatch(d)) for d in out)

    kept = [e for e in out if not superseded(e)]
    merged: dict[tuple[Any, ...], Any] = {}
    for e in kept:
        if e["loc"] in merged:
            first = merged[e["loc"]]
            if e["msg"] not in first["msg"]:
                first["msg"] = f"{first['msg']}; or {e['msg'][:1].lower()}{e['msg'][1:]}"
        else:
            merged[e["loc"]] = dict(e)
    return list(merged.values())


def _line(error: Any, where: str, schema: type[BaseModel] | None = None) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    path = ".".join(p for p in (where, loc) if p) or "(top level)"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        known = _fields_at(schema, tuple(error["loc"])[:-1])
        msg = _UNKNOWN_FIELD + (f" (known: {', '.join(known)})" if known else "")
    given = error.get("input")
    got = f" (got {given!r})" if "input" in error and not isinstance(given, dict) else ""
    return f"{path}: {msg}{got}"


def format_validation_error(err: ValidationError, source: str = "", where: str = "",
                            headline: str = "", schema: type[BaseModel] | None = None) -> str:
    """``err`` in nastk's words: one line per error, ``source: where.location: message (got
    value)``; an unknown field lists the known ones when the ``schema`` that failed is given;
    a union field's failed members speak as one (see :func:`_merged`). With a ``headline``
    (e.g. ``invalid options for strategy 'evolution'``) the first line is ``source: where:
    headline:`` and the errors follow, indented."""
    lines = [_line(e, where, schema) for e in _merged(err.errors())]
    if headline:
        first = ": ".join(p for p in (source, where) if p)
        return "\n".join([f"{first}: {headline}:" if first else f"{headline}:",
                          *(f"  {line}" for line in lines)])
    return "\n".join(f"{source}: {line}" if source else line for line in lines)


def validate_options(schema: type[M], options: Mapping[str, Any] | None, *, source: str = "",
                     where: str = "", what: str = "") -> M:
    """``options`` validated by ``schema``; a :class:`ConfigError` worded by
    :func:`format_validation_error` otherwise (``what``, e.g. ``strategy 'evolution'``, makes
    the headline ``invalid options for <what>``)."""
    try:
        return schema.model_validate(dict(options or {}))
    except ValidationError as err:
        headline = f"invalid options for {what}" if what else ""
        raise ConfigError(format_validation_error(err, source, where, headline, schema)
                          ) from None


_PREVALIDATED: contextvars.ContextVar[tuple[type[BaseModel], BaseModel] | None] = (
    contextvars.ContextVar("nastk_prevalidated_options", default=None))


@contextlib.contextmanager
def prevalidated(schema: type[BaseModel], model: BaseModel) -> Iterator[None]:
    """Within the block, :func:`options_of` on ``schema`` with ``model``'s values returns
    ``model`` itself (the registry constructs a plugin here after validating its options)."""
    token = _PREVALIDATED.set((schema, model))
    try:
        yield
    finally:
        _PREVALIDATED.reset(token)


def options_of(schema: type[M], options: Mapping[str, Any], *, what: str = "") -> M:
    """A plugin's options as its ``schema``: the registry's validated model when the plugin is
    being built by :func:`nastk.core.registry.instantiate` (not validated again), else
    ``options`` validated now (errors as :func:`validate_options` words them)."""
    held = _PREVALIDATED.get()
    if held is not None and held[0] is schema and dict(options) == held[1].model_dump():
        _PREVALIDATED.set(None)  # one construction only: a nested plugin validates its own
        return held[1]  # type: ignore[return-value]
    return validate_options(schema, options, what=what)


def omit_quiet_defaults(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (``model``'s dump) without the fields of ``model.quiet_defaults`` that hold
    their default."""
    fields = type(model).model_fields
    for name in getattr(model, "quiet_defaults", ()):
        if name in data and getattr(model, name) == fields[name].get_default(
                call_default_factory=True):
            data.pop(name)
    return data


class QuietDefaults(BaseModel):
    """Mixin of options that gained fields after runs were stored with them: the fields named
    in :attr:`quiet_defaults` are left out of a dump while they hold their default, so that
    the options of a run that does not set them dump (and identify the run, e.g. one made
    with the Python API) as they did before. A subclass with a serializer of its own calls
    :func:`omit_quiet_defaults`."""

    quiet_defaults: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_quiet_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return omit_quiet_defaults(self, handler(self))
