"""Predictors backed by scikit-learn regressors: gradient boosting, random forest, Gaussian
process and ridge regression."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from nastk.prediction.base import Predictor


class _SklearnPredictor(Predictor):
    """Shared plumbing: ``_make()`` builds the estimator, fitted on standardized targets.

    Fitting and predicting run with one BLAS/OpenMP thread: the matrices are small, and extra
    threads on a busy machine only contend (a Gaussian process fit was 30x slower with two).
    """

    @abstractmethod
    def _make(self) -> Any:
        """A fresh, unfitted scikit-learn estimator configured from the options."""

    def fit_encoded(self, X: np.ndarray, scores: Any) -> Predictor:
        with threadpool_limits(limits=1):
            return super().fit_encoded(X, scores)

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1):
            return super().predict_encoded(X)

    def predict_with_std_encoded(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with threadpool_limits(limits=1):
            return super().predict_with_std_encoded(X)

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        self.model = self._make()
        self.model.fit(X, z)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X)


class GradientBoostingOptions(BaseModel):
    """Options of :class:`GradientBoostingPredictor`."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(300, ge=1, description="boosting rounds")
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(3, ge=1, description="depth of each tree")
    subsample: float = Field(0.8, gt=0, le=1, description="row fraction per round")
    min_samples_leaf: int = Field(1, ge=1)


class GradientBoostingPredictor(_SklearnPredictor):
    """Gradient-boosted regression trees (scikit-learn GradientBoostingRegressor)."""

    Options = GradientBoostingOptions

    def _make(self) -> GradientBoostingRegressor:
        o = self.options
        return GradientBoostingRegressor(
            n_estimators=o.n_estimators, learning_rate=o.learning_rate, max_depth=o.max_depth,
            subsample=o.subsample, min_samples_leaf=o.min_samples_leaf, random_state=self.seed)


class RandomForestOptions(BaseModel):
    """Options of :class:`RandomForestPredictor`."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1, description="trees")
    max_features: float = Field(0.5, gt=0, le=1, description="feature fraction per split")
    min_samples_leaf: int = Field(1, ge=1)
    max_depth: int | None = Field(None, ge=1)


class RandomForestPredictor(_SklearnPredictor):
    """Random forest regression (scikit-learn RandomForestRegressor, one job)."""

    Options = RandomForestOptions

    def _make(self) -> RandomForestRegressor:
        o = self.options
        return RandomForestRegressor(
            n_estimators=o.n_estimators, max_features=o.max_features,
            min_samples_leaf=o.min_samples_leaf, max_depth=o.max_depth,
            random_state=self.seed, n_jobs=1)


class GaussianProcessOptions(BaseModel):
    """Options of :class:`GaussianProcessPredictor`."""

    model_config = ConfigDict(extra="forbid")

    nu: float = Field(2.5, description="Matern smoothness: 0.5, 1.5, 2.5 or inf (RBF)")
    length_scale: float = Field(2.0, gt=0, description="initial (isotropic) length scale")
    noise: float = Field(0.1, gt=0, description="initial white-noise level (standardized "
                                                "targets)")
    n_restarts: int = Field(0, ge=0, description="extra optimizer restarts of the kernel "
                                                 "hyperparameters")
    max_opt_points: int = Field(
        300, ge=2, description="kernel hyperparameters are optimized on at most this many "
                               "training points (a seeded subset; the likelihood costs O(n^3) "
                               "per step), then the GP is refitted on all of them")

    @field_validator("nu")
    @classmethod
    def _closed_form_nu(cls, nu: float) -> float:
        if nu not in (0.5, 1.5, 2.5, float("inf")):
            raise ValueError(f"nu={nu} is not one of 0.5, 1.5, 2.5, inf (the closed-form "
                             "Matern kernels)")
        return nu


class GaussianProcessPredictor(_SklearnPredictor):
    """Gaussian process regression, Matern + white-noise kernel, with a predictive std.

    The kernel is ``C * Matern(nu, isotropic length scale) + White``; its hyperparameters
    maximize the marginal likelihood on up to ``max_opt_points`` training points, and the final
    GP conditions on every training point with those hyperparameters.
    """

    Options = GaussianProcessOptions
    has_uncertainty = True

    def _make(self) -> GaussianProcessRegressor:
        o = self.options
        kernel = (ConstantKernel(1.0, (1e-3, 1e3))
                  * Matern(length_scale=o.length_scale, length_scale_bounds=(1e-2, 1e3), nu=o.nu)
                  + WhiteKernel(noise_level=o.noise, noise_level_bounds=(1e-6, 1e1)))
        return GaussianProcessRegressor(kernel=kernel, normalize_y=True,
                                        n_restarts_optimizer=o.n_restarts,
                                        random_state=self.seed)

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        X = X.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached is fine
            self.model = self._make()
            n = X.shape[0]
            if n > self.options.max_opt_points:
                rng = np.random.default_rng(self.seed)
                sub = rng.choice(n, size=self.options.max_opt_points, replace=False)
                self.model.fit(X[sub], z[sub])
                self.model = GaussianProcessRegressor(
                    kernel=self.model.kernel_, normalize_y=True, optimizer=None)
            self.model.fit(X, z)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X.astype(np.float64))

    def _predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.model.predict(X.astype(np.float64), return_std=True)
        return mean, std


class RidgeOptions(BaseModel):
    """Options of :class:`RidgePredictor`."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(1.0, ge=0, description="L2 penalty")


class RidgePredictor(_SklearnPredictor):
    """Ridge (L2-regularized linear) regression on the encoding."""

    Options = RidgeOptions

    def _make(self) -> Ridge:
        return Ridge(alpha=self.options.alpha)
