"""A search config as an evaluator factory: what a search built from a config sends its Ray
workers (:class:`nastk.executors.worker.EvaluatorFactory`).

The worker rebuilds the evaluator from the config: it imports the config's ``plugins`` and
the space and task the config names (nothing else), and loads a supernet checkpoint once.

No shared file system is needed besides the data set: the factory carries a
:class:`~nastk.executors.shipping.Parcel` with the bytes of the files the evaluator reads (the
weight-sharing evaluator's supernet checkpoint, a train evaluator's ``init.from``) and the
source of the plugin modules (``plugins:`` and a function evaluator's module) that are not
installed packages; a worker unpacks it and builds the evaluator from those copies. The data
set stays a path on each node (the worker's up-front data check names the node when it is
missing there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nastk.core.errors import NastkError
from nastk.evaluation.base import Evaluator
from nastk.executors.shipping import Parcel, on_node

__all__ = ["SHIPPED_FILES", "ConfigEvaluatorFactory", "shipped_modules"]

#: the config fields (dotted paths into its JSON data) naming files a worker's evaluator reads,
#: shipped by value (``from_``: ``init.from`` as pydantic dumps it)
SHIPPED_FILES = ("evaluator.supernet.checkpoint", "evaluator.train.init.from_")


def shipped_modules(config: dict[str, Any]) -> list[str]:
    """The modules a worker imports for a search config: its plugins and the module of a
    function evaluator."""
    modules = list(config.get("plugins") or [])
    function = (config.get("evaluator") or {}).get("function")
    if function:
        modules.append(str(function).split(":")[0])
    return modules


@dataclass(frozen=True)
class ConfigEvaluatorFactory:
    """Builds the evaluator of a search config (its JSON data) in a worker process; ``parcel``
    carries the files and modules it needs (see the module docstring)."""

    config: dict[str, Any]
    parcel: Parcel = field(default_factory=Parcel)

    @classmethod
    def shipping(cls, config: dict[str, Any]) -> ConfigEvaluatorFactory:
        """A factory carrying the bytes of every file in :data:`SHIPPED_FILES` the config names
        and of its plugin modules, read now (relative paths from this process's working
        directory)."""
        return cls(config, Parcel.pack(config, SHIPPED_FILES, shipped_modules(config)))

    @property
    def key(self) -> str:
        shipped = self.parcel.digests()
        return "config:" + hashlib.sha256(
            json.dumps([self.config, shipped], sort_keys=True).encode()).hexdigest()

    def __call__(self) -> Evaluator:
        from nastk.config.compose import (
            build_evaluator,
            build_space_and_task,
            check_evaluator_data,
        )
        from nastk.config.schema import parse_config

        try:
            data = self.parcel.unpack(self.config)
            config = parse_config(data, "search config sent to a Ray worker")
            space, task = build_space_and_task(config)
            check_evaluator_data(config, task)  # the data set is a path on each node
            return build_evaluator(config, space, task)
        except NastkError as err:  # a node without the data set, say: name the node
            raise on_node(err) from None

