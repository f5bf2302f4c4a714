"""Loading a Python object a config names as ``package.module:attr`` (an evaluator function,
a cost function): the one loader every part of the engine uses."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nastk.core.errors import ConfigError


def load_object(spec: str, where: str) -> Callable[..., Any]:
    """``package.module:attr`` -> that callable; errors (a :class:`~nastk.core.errors.ConfigError`)
    start with ``where``, the config field that named it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{where}: {spec!r} must look like 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}: cannot load {spec!r}: cannot import {module_name!r}: "
                          f"{err}") from err
    try:
        obj = getattr(module, attr)
    except AttributeError as err:
        detail = str(err)  # a module's __getattr__ may say what it has
        plain = detail == f"module {module_name!r} has no attribute {attr!r}"
        raise ConfigError(f"{where}: cannot load {spec!r}: "
                          + (f"module {module_name!r} has no {attr!r}" if plain or not detail
                             else detail)) from None
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is not callable")
    return obj
