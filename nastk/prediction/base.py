"""The performance-predictor contract: ``fit(archs, scores)`` / ``predict(archs)`` over a search
space's numeric encoding (:meth:`nastk.SearchSpace.encode`).

The engine owns it; the predictor plugins (``predictors/``) subclass :class:`Predictor`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from nastk.core.errors import NastkError
from nastk.core.options import options_of
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace


class PredictorError(NastkError, ValueError):
    """A predictor was given unusable data or used in the wrong order."""


class NotFittedError(PredictorError):
    """``predict`` was called before ``fit``."""


class NoOptions(BaseModel):
    """A predictor without options."""

    model_config = ConfigDict(extra="forbid")


ArchLike = Architecture | Mapping[str, Any]


class Predictor(ABC):
    """Predicts an architecture's score from its encoding.

    ``fit(archs, scores)`` encodes the architectures with ``space.encode``, standardizes the
    scores (zero mean, unit variance; a constant target keeps unit scale) and trains the model
    on the standardized targets; ``predict(archs)`` returns predictions on the original scale.
    Larger scores are better by convention, but a regressor does not care.

    ``predict_with_std(archs)`` returns ``(mean, std)`` for predictors with uncertainty
    (``has_uncertainty = True``: the ensemble and the Gaussian process); the others raise a
    :class:`PredictorError` naming those that have it, rather than inventing a zero std.

    Subclasses declare their options as a pydantic ``Options`` model (``extra="forbid"``) and
    implement :meth:`_fit` and :meth:`_predict` on encoded, standardized data. Every predictor is
    deterministic given its ``seed``.
    """

    #: pydantic model validating the predictor's options (subclasses replace it)
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: whether :meth:`predict_with_std` is available
    has_uncertainty: ClassVar[bool] = False
    #: whether ``fit``/``predict`` take a ``costs`` argument (the path filter)
    uses_costs: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"{type(self).__name__}: expected a nastk SearchSpace, got "
                            f"{type(space).__name__}")
        self.space = space
        self.seed = int(seed)
        self.options = options_of(self.Options, options,
                                  what=f"predictor {type(self).__name__}")
        self._y_mean = 0.0
        self._y_scale = 1.0
        self._n_features: int | None = None
        self._fitted = False

    # -- public API ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has succeeded."""
        return self._fitted

    def encode(self, archs: Sequence[ArchLike]) -> np.ndarray:
        """The ``(n, encoding_size)`` float32 matrix of the architectures' encodings."""
        rows = []
        for i, arch in enumerate(archs):
            a = arch if isinstance(arch, Architecture) else Architecture(arch)
            try:
                rows.append(self.space.encode(a))
            except (KeyError, ValueError, IndexError) as err:
                raise PredictorError(
                    f"{self.name}: architecture #{i} ({a.key}) does not belong to search space "
                    f"{self.space.name!r} ({err!r}); pass architectures of this space (check "
                    "them with space.validate)") from None
        if not rows:
            return np.zeros((0, self.space.encoding_size()), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def fit(self, archs: Sequence[ArchLike], scores: Sequence[float] | np.ndarray) -> Predictor:
        """Train on ``archs`` and their ``scores``; returns ``self``."""
        archs = list(archs)
        check_lengths(self.name, len(archs), scores)
        return self.fit_encoded(self.encode(archs), scores)

    def fit_encoded(self, X: np.ndarray, scores: Sequence[float] | np.ndarray) -> Predictor:
        """:meth:`fit` on an already encoded ``(n, d)`` matrix."""
        X = np.asarray(X, dtype=np.float32)
        y = check_scores(self.name, X.shape[0], scores)
        if X.ndim != 2:
            raise PredictorError(f"{self.name}: expected a 2-d encoding matrix, got shape "
                                 f"{X.shape}")
        self._y_mean = float(y.mean())
        std = float(y.std())
        self._y_scale = std if std > 1e-12 else 1.0
        self._n_features = X.shape[1]
        self._fit(X, (y - self._y_mean) / self._y_scale)
        self._fitted = True
        return self

    def predict(self, archs: Sequence[ArchLike]) -> np.ndarray:
        """Predicted scores (float64, original scale), one per architecture."""
        return self.predict_encoded(self.encode(list(archs)))

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        """:meth:`predict` on an already encoded matrix."""
        X = self._check_predict(X)
        if X.shape[0] == 0:
            return np.zeros(0)
        z = np.asarray(self._predict(X), dtype=np.float64).reshape(-1)
        return z * self._y_scale + self._y_mean

    def predict_with_std(self, archs: Sequence[ArchLike]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of the predicted scores; only for predictors with
        ``has_uncertainty``."""
        return self.predict_with_std_encoded(self.encode(list(archs)))

    def predict_with_std_encoded(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_with_std` on an already encoded matrix."""
        if not self.has_uncertainty:
            raise PredictorError(
                f"{self.name} has no uncertainty estimate; use a predictor that has one "
                "('ensemble' or 'gp') for predict_with_std, or predict() for the mean")
        X = self._check_predict(X)
        if X.shape[0] == 0:
            return np.zeros(0), np.zeros(0)
        mean, std = self._predict_with_std(X)
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
        return mean * self._y_scale + self._y_mean, std * self._y_scale

    # -- for subclasses -----------------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        """Train on encodings ``X`` (float32, ``(n, d)``) and standardized targets ``z``."""

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Standardized predictions for encodings ``X``."""

    def _predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardized ``(mean, std)``; predictors with ``has_uncertainty`` override it."""
        raise TypeError(f"{self.name} sets has_uncertainty = True but does not implement "
                        "_predict_with_std(X)")

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(f"{self.name} is not fitted; call fit(archs, scores) before "
                                 "predicting")

    def _check_predict(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise PredictorError(f"{self.name}: encodings of shape {X.shape} do not match the "
                                 f"{self._n_features} features it was fitted on; predict "
                                 "architectures of the space it was fitted on")
        return X

    def __repr__(self) -> str:
        state = "fitted" if self._fitted else "not fitted"
        return f"{self.name}({self.space.name!r}, seed={self.seed}, {state})"


def check_lengths(who: str, n: int, scores: Sequence[float] | np.ndarray) -> None:
    """Refuse empty or mismatched training data with a message naming both lengths."""
    m = len(scores)
    if n != m:
        raise PredictorError(f"{who}.fit: got {n} architectures but {m} scores; pass one score "
                             "per architecture")


def check_scores(who: str, n: int, scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores as a finite float64 vector of length ``n >= 2``."""
    check_lengths(who, n, scores)
    if n < 2:
        raise PredictorError(f"{who}.fit: needs at least 2 architectures with scores, got {n}")
    try:
        y = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise PredictorError(f"{who}.fit: scores must be numbers ({err})") from None
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise PredictorError(f"{who}.fit: score #{int(bad[0])} is {y[bad[0]]} ({bad.size} "
                             "non-finite in all); drop failed architectures before fitting")
    return y
