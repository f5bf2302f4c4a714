"""Zero-cost proxies as predictors: ranking by one proxy, or proxies as extra features.

- ``zero_cost`` (:class:`ZeroCostPredictor`) predicts a proxy's value (oriented so that larger
  means better, see :data:`ORIENTATION`); fitting learns nothing, so a strategy can rank
  candidates by the proxy alone (``predictor_guided`` with ``predictor: zero_cost``).
- ``with_proxies`` (:class:`ProxyFeaturesPredictor`) fits another registered predictor on the
  space's encoding followed by the proxies (signed log, then standardised on the training set).

Both need the task whose network and input the proxies use (``task: {name: classification,
options: {...}}``): a tabular benchmark's evaluator trains nothing, so the proxy builds its own
network from the space's body and that task's head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nastk.core.registry import PREDICTORS, TASKS, instantiate
from nastk.prediction.base import ArchLike, Predictor, PredictorError, check_scores
from nastk.predictors.zero_cost.proxies import PROXIES
from nastk.predictors.zero_cost.scorer import ZeroCostScorer
from nastk.space.search_space import SearchSpace

__all__ = ["ORIENTATION", "ProxyFeaturesPredictor", "ZeroCostPredictor"]

#: +1 when a larger proxy value predicts a better network, as published for every proxy here
ORIENTATION: dict[str, float] = {p: 1.0 for p in PROXIES}


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered task (`nastk list tasks`)")
    options: dict[str, Any] = Field(default_factory=dict)


class _ProxyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: TaskSpec = Field(description="the task whose network and one training batch the "
                           "proxies use, e.g. {name: classification, options: {dataset: glyphs,"
                           " image_size: 32, channels: 3}}")
    batch_size: int = Field(64, ge=2, description="examples in the scoring batch")
    data_seed: int = Field(0, description="seed of the batch and of the networks' initial "
                           "weights (the same for every architecture)")


class ZeroCostOptions(_ProxyOptions):
    """Options of :class:`ZeroCostPredictor`."""

    proxy: str = Field("nwot", description=f"one of {sorted(PROXIES)}")

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str) -> str:
        if v not in PROXIES:
            raise ValueError(f"proxy {v!r} unknown; use one of {sorted(PROXIES)}")
        return v


class ProxyFeaturesOptions(_ProxyOptions):
    """Options of :class:`ProxyFeaturesPredictor`."""

    proxies: list[str] = Field(default_factory=lambda: ["nwot", "synflow", "jacov"],
                               min_length=1, description=f"some of {sorted(PROXIES)}")
    inner: str = Field("gp", description="registered predictor fitted on encoding + proxies")
    inner_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in PROXIES]
        if bad:
            raise ValueError(f"proxies {bad} unknown; use some of {sorted(PROXIES)}")
        return v


def _scorer(space: SearchSpace, options: _ProxyOptions, proxies: Sequence[str],
            where: str) -> ZeroCostScorer:
    task = instantiate(TASKS, options.task.name, options.task.options,
                       where=f"{where}.task.options")
    return ZeroCostScorer(space, task, proxies, batch_size=options.batch_size,
                          seed=options.data_seed)


def signed_log(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: tames synflow's range (up to 1e40 on NB201) and keeps order."""
    return np.sign(x) * np.log1p(np.abs(x))


class ZeroCostPredictor(Predictor):
    """Predicts one zero-cost proxy's value (larger is better); ``fit`` only checks its
    input, so the ranking is the proxy's."""

    Options = ZeroCostOptions

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed, **options)
        self.scorer = _scorer(space, self.options, [self.options.proxy], "zero_cost")

    def fit(self, archs: Sequence[ArchLike], scores: Sequence[float] | np.ndarray
            ) -> ZeroCostPredictor:
        check_scores(self.name, len(list(archs)), scores)
        self._fitted = True
        return self

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        self._require_fitted()
        archs = list(archs)
        return ORIENTATION[self.options.proxy] * signed_log(self.scorer.scores(archs)[:, 0])

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:  # fit() is overridden
        raise PredictorError("zero_cost predicts from architectures, not encodings")

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise PredictorError("zero_cost predicts from architectures, not encodings; call "
                             "predict(archs)")


class ProxyFeaturesPredictor(Predictor):
    """Another predictor (``inner``) fitted on the space's encoding plus zero-cost proxies."""

    Options = ProxyFeaturesOptions

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed, **options)
        o = self.options
        if o.inner == "with_proxies" or getattr(PREDICTORS.get(o.inner), "uses_costs", False):
            raise PredictorError(f"with_proxies: inner {o.inner!r} cannot be wrapped; pick a "
                                 "regressor such as 'gp', 'ensemble' or 'gbdt'")
        self.inner: Predictor = instantiate(PREDICTORS, o.inner, o.inner_options, space,
                                            seed=seed, where="with_proxies.inner_options")
        self.has_uncertainty = self.inner.has_uncertainty  # type: ignore[misc]
        self.scorer = _scorer(space, o, o.proxies, "with_proxies")
        self._mu = np.zeros(len(o.proxies))
        self._sd = np.ones(len(o.proxies))

    def _features(self, archs: list[ArchLike]) -> np.ndarray:
        z = (signed_log(self.scorer.scores(archs)) - self._mu) / self._sd
        return np.concatenate([self.encode(archs), z.astype(np.float32)], axis=1)

    def fit(self, archs: Sequence[ArchLike], scores: Sequence[float] | np.ndarray
            ) -> ProxyFeaturesPredictor:
        archs = list(archs)
        check_scores(self.name, len(archs), scores)
        raw = signed_log(self.scorer.scores(archs))
        self._mu = raw.mean(axis=0)
        sd = raw.std(axis=0)
        self._sd = np.where(sd > 1e-12, sd, 1.0)
        self.inner.fit_encoded(self._features(archs), scores)
        self._fitted = True
        return self

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        self._require_fitted()
        return self.inner.predict_encoded(self._features(list(archs)))

    def predict_with_std(self, archs: Sequence[ArchLike]) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted()
        return self.inner.predict_with_std_encoded(self._features(list(archs)))

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:  # fit() is overridden
        raise PredictorError("with_proxies fits from architectures; call fit(archs, scores)")

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise PredictorError("with_proxies predicts from architectures; call predict(archs)")
