"""A search config as an evaluator factory: what a search built from a config sends its Ray
workers (:class:`nastk.executors.worker.EvaluatorFactory`).

The worker rebuilds the evaluator from the config: it imports the config's ``plugins`` and
the space and task the config names (nothing else), and loads a supernet checkpoint once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nastk.evaluation.base import Evaluator

__all__ = ["ConfigEvaluatorFactory"]


@dataclass(frozen=True)
class ConfigEvaluatorFactory:
    """Builds the evaluator of a search config (its JSON data) in a worker process."""

    config: dict[str, Any]

    @property
    def key(self) -> str:
        return "config:" + json.dumps(self.config, sort_keys=True)

    def __call__(self) -> Evaluator:
        from nastk.config.compose import build_evaluator, build_space_and_task
        from nastk.config.schema import parse_config

        config = parse_config(self.config, "search config sent to a Ray worker")
        space, task = build_space_and_task(config)
        return build_evaluator(config, space, task)
