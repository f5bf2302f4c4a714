"""A search config as an evaluator factory: what a search built from a config sends its Ray
workers (:class:`nastk.executors.worker.EvaluatorFactory`).

The worker rebuilds the evaluator from the config: it imports the config's ``plugins`` and
the space and task the config names (nothing else), and loads a supernet checkpoint once.

No shared file system is needed for the files the evaluator reads besides the data set: the
driver reads them (:meth:`ConfigEvaluatorFactory.shipping`: the weight-sharing evaluator's
supernet checkpoint, a train evaluator's ``init.from``) and the factory carries their bytes;
a worker writes them into a folder of its own and builds the evaluator from those copies. The
data set stays a path on each node (the worker's up-front data check names the node when it
is missing there).
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nastk.core.errors import ConfigError, NastkError
from nastk.evaluation.base import Evaluator

__all__ = ["SHIPPED_FILES", "ConfigEvaluatorFactory"]

#: the config fields (dotted paths) naming files a worker's evaluator reads, shipped by value
SHIPPED_FILES = ("evaluator.supernet.checkpoint", "evaluator.train.init.from")

#: per worker process: sha256 of shipped bytes -> the local copy written
_WRITTEN: dict[str, Path] = {}


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value


def _local_copy(name: str, blob: bytes) -> Path:
    """A file holding ``blob`` in this process's own folder (written once per content)."""
    digest = hashlib.sha256(blob).hexdigest()
    path = _WRITTEN.get(digest)
    if path is None or not path.is_file():
        folder = Path(tempfile.mkdtemp(prefix="nastk-shipped-"))
        path = folder / name
        path.write_bytes(blob)
        _WRITTEN[digest] = path
    return path


@dataclass(frozen=True)
class ConfigEvaluatorFactory:
    """Builds the evaluator of a search config (its JSON data) in a worker process; ``files``
    carries the bytes of the files the config names (see the module docstring)."""

    config: dict[str, Any]
    #: dotted config field -> (file name, bytes) shipped to the workers
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @classmethod
    def shipping(cls, config: dict[str, Any]) -> ConfigEvaluatorFactory:
        """A factory carrying the bytes of every file in :data:`SHIPPED_FILES` the config
        names, read now (relative paths from this process's working directory)."""
        files: dict[str, tuple[str, bytes]] = {}
        for dotted in SHIPPED_FILES:
            value = _get(config, dotted)
            if value is None:
                continue
            path = Path(value).expanduser()
            try:
                files[dotted] = (path.name, path.read_bytes())
            except OSError as err:
                raise ConfigError(f"{dotted}: cannot read {path} to send it to the Ray "
                                  f"workers: {err.strerror or err}") from None
        return cls(config, files)

    @property
    def key(self) -> str:
        shipped = {k: hashlib.sha256(blob).hexdigest() for k, (_, blob) in self.files.items()}
        return "config:" + json.dumps([self.config, shipped], sort_keys=True)

    def __call__(self) -> Evaluator:
        from nastk.config.compose import (
            build_evaluator,
            build_space_and_task,
            check_evaluator_data,
        )
        from nastk.config.schema import parse_config

        data = copy.deepcopy(self.config)
        for dotted, (name, blob) in self.files.items():
            _set(data, dotted, str(_local_copy(name, blob)))
        try:
            config = parse_config(data, "search config sent to a Ray worker")
            space, task = build_space_and_task(config)
            check_evaluator_data(config, task)  # the data set is a path on each node
            return build_evaluator(config, space, task)
        except NastkError as err:  # a node without the data set, say: name the node
            text = f"on node {socket.gethostname()}: {err}"
            try:
                renamed = type(err)(text)
            except TypeError:  # an error class with other constructor arguments
                renamed = NastkError(text)
            raise renamed from None
