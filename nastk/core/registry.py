"""Plugin registries: search spaces, tasks, strategies, predictors.

Built-in plugins register through the same entry points a third-party package would use
(``[project.entry-points."nastk.strategies"]`` in pyproject.toml); code can also register at run
time with ``STRATEGIES.register("name")(cls)``. Lookups give an error that lists what exists.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from nastk.core.errors import ConfigError, RegistryError
from nastk.core.options import prevalidated, validate_options

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> plugin object, filled from an entry-point group and by :meth:`register`.

    ``attr`` is the name of the module attribute holding the registry (``STRATEGIES``), which
    the error for an unknown name tells users to register with.
    """

    def __init__(self, kind: str, group: str, *, attr: str) -> None:
        self.kind = kind
        self.group = group
        self.attr = attr
        self._objects: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def _eps(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in
                                  importlib.metadata.entry_points(group=self.group)}
        return self._entry_points

    def register(self, name: str, obj: T | None = None, *,
                 override: bool = False) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as ``@REG.register("name")``."""

        def deco(o: T) -> T:
            same = name in self._objects and _qualname(self._objects[name]) == _qualname(o)
            if not (override or same) and (name in self._objects or name in self._eps()):
                raise RegistryError(f"{self.kind} {name!r} is already registered; pick another "
                                    "name or pass override=True")
            self._objects[name] = o
            self._sources[name] = f"{getattr(o, '__module__', '?')} (registered at run time)"
            return o

        return deco(obj) if obj is not None else deco

    def unregister(self, name: str) -> None:
        self._objects.pop(name, None)
        self._sources.pop(name, None)

    def names(self) -> list[str]:
        return sorted(set(self._objects) | set(self._eps()))

    def __contains__(self, name: object) -> bool:
        return name in self._objects or name in self._eps()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def source(self, name: str) -> str:
        if name in self._sources:
            return self._sources[name]
        ep = self._eps()[name]
        return f"{ep.value} (entry point)"

    def name_of(self, obj: object) -> str | None:
        """The name ``obj`` (a plugin, or an instance of a plugin class) is registered under,
        or ``None``. Only the entry point whose module and attribute match is loaded to make
        sure, so asking imports no other plugin."""
        candidates = [obj] if isinstance(obj, type) else [obj, type(obj)]
        for name, known in self._objects.items():
            if any(known is c for c in candidates):
                return name
        for name, ep in self._eps().items():
            if name in self._objects:
                continue
            for c in candidates:
                module = getattr(c, "__module__", "") or ""
                if ep.attr == getattr(c, "__qualname__", None) and (
                        module == ep.module or module.startswith(ep.module + ".")):
                    if self.get(name) is c:
                        return name
        return None

    def get(self, name: str) -> T:
        if name in self._objects:
            return self._objects[name]
        eps = self._eps()
        if name not in eps:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}. Fix the "
                                f"name, or register yours with nastk.registry."
                                f"{self.attr}.register")
        try:
            obj = eps[name].load()
        except Exception as err:  # a broken plugin must say which one
            raise RegistryError(f"{self.kind} {name!r} failed to load from "
                                f"{eps[name].value}: {err}") from err
        self._objects[name] = obj
        self._sources[name] = f"{eps[name].value} (entry point)"
        return obj


SEARCH_SPACES: Registry[Callable[..., Any]] = Registry("search space", "nastk.search_spaces",
                                                      attr="SEARCH_SPACES")
TASKS: Registry[Callable[..., Any]] = Registry("task", "nastk.tasks", attr="TASKS")
STRATEGIES: Registry[Callable[..., Any]] = Registry("strategy", "nastk.strategies",
                                                   attr="STRATEGIES")
PREDICTORS: Registry[Callable[..., Any]] = Registry("predictor", "nastk.predictors",
                                                   attr="PREDICTORS")

ALL: dict[str, Registry[Any]] = {"search spaces": SEARCH_SPACES, "tasks": TASKS,
                                 "strategies": STRATEGIES, "predictors": PREDICTORS}

#: other spellings of the keys of :data:`ALL` (after lower-casing, ``_``/``-`` -> space)
_KIND_ALIASES: dict[str, str] = {"spaces": "search spaces", "space": "search spaces",
                                 "search space": "search spaces", "task": "tasks",
                                 "strategy": "strategies", "predictor": "predictors"}


def resolve_kind(text: str) -> str:
    """The key of :data:`ALL` that ``text`` names: ``spaces``, ``search_spaces``,
    ``search-spaces`` and ``search space`` all name ``search spaces``; singulars work too.
    Raises :class:`ValueError` listing the kinds otherwise."""
    key = " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
    key = _KIND_ALIASES.get(key, key)
    if key not in ALL:
        raise ValueError(f"unknown kind {text!r}; choose one of {', '.join(ALL)}")
    return key


def _qualname(obj: Any) -> str:
    """Where an object was defined; a module imported twice re-registers the same names."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def summary(obj: Any) -> str:
    """The first paragraph of a plugin's docstring, its wrapped lines joined (a docstring's
    first line often ends mid-sentence)."""
    doc = inspect.cleandoc(getattr(obj, "__doc__", None) or "")
    paragraph = doc.split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines() if line.strip())


def _validated(registry: Registry[Any], name: str, options: Mapping[str, Any] | None, *,
               where: str, source: str) -> tuple[Any, BaseModel | None, dict[str, Any]]:
    try:
        obj = registry.get(name)
    except RegistryError as err:
        if not source:
            raise
        field = f"{where.removesuffix('.options')}: " if where else ""
        raise RegistryError(f"{source}: {field}{err}") from err.__cause__
    opts = dict(options or {})
    schema = getattr(obj, "Options", None)
    model: BaseModel | None = None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        model = validate_options(schema, opts, source=source, where=where,
                                 what=f"{registry.kind} {name!r}")
        opts = model.model_dump()
    return obj, model, opts


def validated_options(registry: Registry[Any], name: str, options: Mapping[str, Any] | None,
                      *, where: str = "", source: str = "") -> tuple[Any, dict[str, Any]]:
    """Look ``name`` up and validate the user's ``options`` by the plugin's pydantic
    ``Options`` model when it has one: the plugin and its options, without calling it. Errors
    as :func:`instantiate`'s."""
    obj, _, opts = _validated(registry, name, options, where=where, source=source)
    return obj, opts


def instantiate(registry: Registry[Any], name: str, options: Mapping[str, Any] | None,
                *args: Any, where: str = "", source: str = "", **kwargs: Any) -> Any:
    """Look ``name`` up and call it with ``*args, **kwargs`` plus the user's ``options``,
    validated once, by the plugin's pydantic ``Options`` model when it has one (a plugin that
    takes its options through :func:`nastk.core.options.options_of` gets the validated model
    without validating again). Errors name the config file (``source``, e.g. ``exp.yaml``),
    the config field (``where``, e.g. ``space.options``) and the bad option: ``exp.yaml:
    space.options: ...``."""
    obj, model, opts = _validated(registry, name, options, where=where, source=source)
    prefix = "".join(f"{part}: " for part in (source, where) if part)
    try:
        if model is None:
            return obj(*args, **kwargs, **opts)
        with prevalidated(type(model), model):  # options_of hands the model over
            return obj(*args, **kwargs, **opts)
    except TypeError as err:
        raise ConfigError(f"{prefix}{registry.kind} {name!r} rejected options "
                          f"{sorted(opts)}: {err}") from err


# -- options of a plugin, as `nastk list` shows them -----------------------------------------

#: the default shown for an option without one
REQUIRED = "(required)"
_MODULE_PREFIX = re.compile(r"\b(?:typing|typing_extensions|pathlib|collections\.abc)\.")


def _type_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty or annotation is None:
        return ""
    if isinstance(annotation, str):  # postponed annotations of a signature
        return annotation
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # the constraints are in the description, not the type
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    return _MODULE_PREFIX.sub("", str(annotation)).replace("NoneType", "None")


def options_table(obj: Any) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, description)`` of each option a plugin accepts, as text.

    From the plugin's pydantic ``Options`` model when it has one (defaults from a
    ``default_factory`` are computed); otherwise from its signature (a class's ``__init__``):
    the parameters that have a default, and keyword-only ones (``(required)`` when they have
    none); ``*args``/``**kwargs`` and parameters before the first default (what the engine
    passes, e.g. space and objective) are left out. Defaults are ``repr`` text.
    """
    schema = getattr(obj, "Options", None)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        rows = []
        for name, field in schema.model_fields.items():
            default = (REQUIRED if field.is_required()
                       else repr(field.get_default(call_default_factory=True)))
            rows.append((field.alias or name, _type_text(field.annotation), default,
                         field.description or ""))
        return rows
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return []
    rows = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty and p.kind is not p.KEYWORD_ONLY:
            continue
        default = REQUIRED if p.default is p.empty else repr(p.default)
        rows.append((p.name, _type_text(p.annotation), default, ""))
    return rows
