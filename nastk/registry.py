"""Plugin registries: search spaces, tasks, strategies, predictors.

Built-in plugins register through the same entry points a third-party package would use
(``[project.entry-points."nastk.strategies"]`` in pyproject.toml); code can also register at run
time with ``STRATEGIES.register("name")(cls)``. Lookups give an error that lists what exists.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from nastk.errors import ConfigError, RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> plugin object, filled from an entry-point group and by :meth:`register`."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
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

    def get(self, name: str) -> T:
        if name in self._objects:
            return self._objects[name]
        eps = self._eps()
        if name not in eps:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}. Fix the "
                                f"name, or register yours with nastk.registry."
                                f"{self.kind.upper().replace(' ', '_')}S.register")
        try:
            obj = eps[name].load()
        except Exception as err:  # a broken plugin must say which one
            raise RegistryError(f"{self.kind} {name!r} failed to load from "
                                f"{eps[name].value}: {err}") from err
        self._objects[name] = obj
        self._sources[name] = f"{eps[name].value} (entry point)"
        return obj


SEARCH_SPACES: Registry[Callable[..., Any]] = Registry("search space", "nastk.search_spaces")
TASKS: Registry[Callable[..., Any]] = Registry("task", "nastk.tasks")
STRATEGIES: Registry[Callable[..., Any]] = Registry("strategy", "nastk.strategies")
PREDICTORS: Registry[Callable[..., Any]] = Registry("predictor", "nastk.predictors")

ALL: dict[str, Registry[Any]] = {"search spaces": SEARCH_SPACES, "tasks": TASKS,
                                 "strategies": STRATEGIES, "predictors": PREDICTORS}


def _qualname(obj: Any) -> str:
    """Where an object was defined; a module imported twice re-registers the same names."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def summary(obj: Any) -> str:
    """First line of a plugin's docstring."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def instantiate(registry: Registry[Any], name: str, options: Mapping[str, Any] | None,
                *args: Any, where: str = "", **kwargs: Any) -> Any:
    """Look ``name`` up and call it with ``*args, **kwargs`` plus the user's ``options``,
    validated by the plugin's pydantic ``Options`` model when it has one. Errors name the
    config field (``where``) and the bad option."""
    obj = registry.get(name)
    opts = dict(options or {})
    schema = getattr(obj, "Options", None)
    prefix = f"{where}: " if where else ""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            opts = schema(**opts).model_dump()
        except ValidationError as err:
            lines = [f"{prefix}invalid options for {registry.kind} {name!r}:"]
            for e in err.errors():
                loc = ".".join(str(p) for p in e["loc"])
                lines.append(f"  {where + '.' if where else ''}{loc}: {e['msg']} "
                             f"(got {e.get('input')!r})")
            raise ConfigError("\n".join(lines)) from None
    try:
        return obj(*args, **kwargs, **opts)
    except TypeError as err:
        raise ConfigError(f"{prefix}{registry.kind} {name!r} rejected options "
                          f"{sorted(opts)}: {err}") from err
