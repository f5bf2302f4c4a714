"""``warm_start:`` in a search config: which earlier runs or studies a search starts from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from nastk.core import registry
from nastk.core.errors import ConfigError

if TYPE_CHECKING:
    from nastk.strategies.base import Strategy
    from nastk.transfer.prior import TransferPrior

__all__ = ["WarmStartUse", "warm_start_row", "warm_start_strategy"]


class WarmStartUse(BaseModel):
    """``warm_start: {from: [RUN_OR_STUDY_DIR, ...], tasks: [...]}``: the search is given the
    evaluated architectures of earlier runs (a run folder) or studies (a study folder: every
    run of its tasks), each earlier task weighted by how well its ranking agrees with the new
    task's results so far (:class:`nastk.transfer.prior.TransferPrior`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sources: list[Path] = Field(
        ..., alias="from", min_length=1,
        description="run folders (one earlier task each) and study folders (one earlier task "
                    "per study task, all its strategies and seeds pooled)")
    tasks: list[str] | None = Field(
        None, min_length=1, description="of the study folders, only these tasks (e.g. every "
        "task but the one searched now); default: all of them")
    exclude: list[str] = Field(
        default_factory=list, description="tasks left out (a study's warm-started searches "
        "leave out their own task: leave-one-task-out)")
    min_results: int = Field(
        5, ge=3, description="results of the new task before the earlier tasks are first "
        "weighed; until then the strategy runs as it would cold")


def _warm_starts(name: str) -> bool:
    try:
        return bool(getattr(registry.STRATEGIES.get(name), "supports_warm_start", False))
    except Exception:  # a plugin that does not load is not offered
        return False


def warm_start_strategy(use: WarmStartUse, strategy: Strategy, where: str) -> TransferPrior:
    """Read ``use``'s earlier tasks over the strategy's space and give the strategy their
    prior (returned); a :class:`ConfigError` starting with ``where`` and naming the fix when
    the strategy cannot warm-start or a source cannot be used."""
    from nastk.transfer.prior import TransferPrior
    from nastk.transfer.sources import read_sources

    if not strategy.supports_warm_start:
        able = [n for n in registry.STRATEGIES.names() if _warm_starts(n)]
        name = registry.STRATEGIES.name_of(strategy) or type(strategy).__name__
        raise ConfigError(f"{where}: warm_start: strategy {name!r} does not warm-start; use "
                          f"one of {able}, or leave warm_start out")
    try:
        sources = read_sources(use.sources, strategy.space, use.tasks, use.exclude)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    prior = TransferPrior(strategy.space, sources, use.min_results)
    strategy.use_warm_start(prior)
    return prior


def warm_start_row(prior: TransferPrior | None) -> dict[str, str]:
    """The report's *Run* table row of a warm-started search: where from (none when cold)."""
    if prior is None:
        return {}
    rows = [f"{s['task']} ({s['architectures']} architectures, {s['runs']} runs)"
            for s in prior.describe()["sources"]]  # type: ignore[union-attr]
    return {"warm start from": "; ".join(rows)}
