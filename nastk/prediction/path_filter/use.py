"""``path_filter:`` in a config: which fitted filter to use and how much of every cost bucket
it keeps. The config schema (:mod:`nastk.config.schema`) embeds it; what the engine does with
it is :mod:`nastk.prediction.path_filter.pruning`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PathFilterUse(BaseModel):
    """``path_filter:`` in a supernet config (train only the paths a fitted filter keeps) or in a
    search config (search only those paths)."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="a filter written by `nastk path-filter fit`")
    keep_ratio: float = Field(0.5, gt=0.0, le=1.0,
                              description="fraction of every cost bucket trained")
    n_samples: int = Field(200, ge=10, description="paths drawn and costed to set each cost "
                                                    "bucket's keep threshold (supernet training: "
                                                    "per phase; the kept ones are the random "
                                                    "paths that phase trains)")
