"""Zero-cost proxies of a space's architectures on a task's input: build, score, cache.

:class:`ZeroCostScorer` builds an architecture's full network for a task (the space's body and
the task's head, weights initialised under ``seed``), takes one batch of the task's training
split (the same ``batch_size`` examples for every architecture, drawn with ``seed``), and
computes the named proxies (:data:`nastk.predictors.zero_cost.proxies.PROXIES`), each on a fresh
copy of the same initial network. Scores are cached per process by everything they depend on, so
refitted predictors and repeated candidates cost nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from nastk.prediction.base import PredictorError
from nastk.predictors.zero_cost.proxies import PROXIES
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

__all__ = ["ZeroCostScorer"]


class ZeroCostScorer:
    """Proxy scores of architectures of ``space`` on one batch of ``task``'s training data."""

    _cache: ClassVar[dict[tuple[str, str], float]] = {}

    def __init__(self, space: SearchSpace, task: Any, proxies: Sequence[str],
                 batch_size: int = 64, seed: int = 0) -> None:
        unknown = [p for p in proxies if p not in PROXIES]
        if unknown:
            raise PredictorError(f"zero-cost proxies {unknown} unknown; use some of "
                                 f"{sorted(PROXIES)}")
        if batch_size < 2:
            raise PredictorError(f"zero-cost proxies need a batch of at least 2, got {batch_size}")
        self.space, self.task = space, task
        self.proxies = list(proxies)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self._inputs: torch.Tensor | None = None
        self._targets: Any = None
        # what a score depends on besides the architecture (the cache key): a task is known by
        # its class and options; one without pydantic options shares nothing with others
        options = getattr(task, "options", None)
        task_id = ({"class": f"{type(task).__module__}.{type(task).__qualname__}",
                    "options": options.model_dump(mode="json")}
                   if hasattr(options, "model_dump") else {"object": id(task)})
        space_options = getattr(space, "options", None)
        self._context = json.dumps(
            {"space": space.name, "space_spec": space.spec(),
             "space_options": (space_options.model_dump(mode="json")
                               if hasattr(space_options, "model_dump") else id(space)),
             "task": task_id, "batch": self.batch_size, "seed": self.seed},
            sort_keys=True, default=str)

    def batch(self) -> tuple[torch.Tensor, Any]:
        """The scoring batch: ``batch_size`` training examples drawn with ``seed``."""
        if self._inputs is None:
            train = self.task.splits()["train"]
            if len(train) < self.batch_size:
                raise PredictorError(f"zero-cost proxies: the task's training split has "
                                     f"{len(train)} examples, fewer than batch_size "
                                     f"{self.batch_size}; lower batch_size")
            idx = np.random.default_rng(self.seed).permutation(len(train))[:self.batch_size]
            self._inputs, self._targets = self.task.collate([train[int(i)] for i in idx])
        return self._inputs, self._targets

    def score(self, arch: Architecture | Mapping[str, Any]) -> dict[str, float]:
        """``{proxy: value}`` for ``arch`` (cached)."""
        arch = self.space.validate(arch)
        keys = {p: (self._context, f"{p}|{arch.key}") for p in self.proxies}
        missing = [p for p in self.proxies if keys[p] not in self._cache]
        if missing:
            inputs, targets = self.batch()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = self.task.build_model(self.space, arch)
            for p in missing:
                self._cache[keys[p]] = float(PROXIES[p](copy.deepcopy(model), inputs, targets,
                                                        self.task.loss))
        return {p: self._cache[keys[p]] for p in self.proxies}

    def scores(self, archs: Sequence[Architecture | Mapping[str, Any]]) -> np.ndarray:
        """``(n, len(proxies))`` matrix of scores."""
        return np.asarray([[s[p] for p in self.proxies] for s in map(self.score, archs)],
                          dtype=np.float64).reshape(len(archs), len(self.proxies))
