"""An ensemble of predictors whose disagreement is the uncertainty estimate."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core.registry import PREDICTORS, instantiate
from nastk.prediction.base import Predictor, PredictorError
from nastk.space.search_space import SearchSpace


class EnsembleOptions(BaseModel):
    """Options of :class:`EnsemblePredictor`."""

    model_config = ConfigDict(extra="forbid")

    member: str = Field("mlp", description="registered predictor name of every member")
    n_members: int = Field(5, ge=2, description="members, each with its own seed")
    bootstrap: bool = Field(False, description="fit each member on a bootstrap resample "
                                                "(needed for members that ignore their seed, "
                                                "such as ridge)")
    member_options: dict[str, Any] = Field(default_factory=dict,
                                           description="options passed to every member")


class EnsemblePredictor(Predictor):
    """An ensemble of K predictors (MLPs by default); their spread is the uncertainty.

    The members differ in seed and, with ``bootstrap``, in their training resample.

    Member ``k`` is the registered predictor ``member`` built with seed ``1000 * seed + k``;
    with ``bootstrap`` it is fitted on ``n`` draws with replacement from the ``n`` training
    architectures (off by default: on NAS-Bench-201 it costs more accuracy than the extra
    spread is worth for MLP members, whose random initialization already makes them disagree
    away from the data). ``predict`` is the members' mean, ``predict_with_std`` adds their standard
    deviation (population std, ``ddof=0``).
    """

    Options = EnsembleOptions
    has_uncertainty = True

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed, **options)
        o = self.options
        if o.member == "ensemble":
            raise PredictorError("ensemble: member='ensemble' would nest ensembles; pick a "
                                 "single predictor such as 'mlp' or 'gbdt'")
        cls = PREDICTORS.get(o.member)
        if getattr(cls, "uses_costs", False):
            raise PredictorError(f"ensemble: member {o.member!r} needs costs, which an "
                                 "ensemble does not pass; pick a regressor such as 'mlp'")
        self.members: list[Predictor] = [self._member(k) for k in range(o.n_members)]

    def _member(self, k: int) -> Predictor:
        return instantiate(PREDICTORS, self.options.member, self.options.member_options,
                           self.space, seed=1000 * self.seed + k, where="ensemble.member_options")

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        n = X.shape[0]
        self.members = [self._member(k) for k in range(self.options.n_members)]
        for k, member in enumerate(self.members):
            if self.options.bootstrap:
                rng = np.random.default_rng([self.seed, k])
                idx = rng.integers(0, n, size=n)
                if np.unique(idx).size < 2:  # a degenerate resample of a tiny set
                    idx = np.arange(n)
            else:
                idx = np.arange(n)
            member.fit_encoded(X[idx], z[idx])

    def _member_predictions(self, X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict_encoded(X) for m in self.members])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._member_predictions(X).mean(axis=0)

    def _predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = self._member_predictions(X)
        return preds.mean(axis=0), preds.std(axis=0)
