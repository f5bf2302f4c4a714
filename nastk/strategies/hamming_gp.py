"""The Gaussian process of Bayesian optimisation (:mod:`nastk.strategies.bayesian`) and of its
multi-fidelity form (:mod:`nastk.strategies.bohb`): an ARD kernel over a space's decisions
(Hamming distances for categorical decisions, a fixed-scale similarity for continuous ones,
with absent conditional values), its hyperparameter fit, the posterior over a candidate pool
grown by rank-one steps, and expected improvement. The kernel's form is described in
:mod:`nastk.strategies.bayesian`'s docstring."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.special import ndtr

__all__ = ["UNIT", "HammingGP", "Posterior", "continuous_similarity", "expected_improvement"]

#: prior means (log scale) of the per-decision weight, the noise, the signal variance and the
#: additive variance
_PRIOR_THETA, _PRIOR_NOISE, _PRIOR_SIGNAL = math.log(0.5), math.log(0.05), 0.0
_PRIOR_ADDITIVE = math.log(0.3)
_PRIOR_VAR = 4.0
_JITTER = 1e-6
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: a continuous decision's place on its scale, u in [0, 1], is held as the integer
#: ``round(u * UNIT)`` (``-1``: absent), so decision vectors stay integer rows
UNIT = float(2 ** 30)
#: the fixed inverse squared length-scale (on the unit scale) of a continuous similarity
_ELL = 4.0


class HammingGP:
    """A Gaussian process on decision vectors with the ARD Hamming kernel plus an additive one
    (:mod:`nastk.strategies.bayesian`'s docstring); hyperparameters in log scale: ``D``
    weights, then the noise, the signal variance and the additive variance.

    A decision with ``0`` in ``counts`` is continuous: its entries are integers, the place
    ``u`` in [0, 1] on its dimension's scale in units of ``2**-30`` (``-1``: absent), and its
    distance is ``1 - S`` with the similarity ``S`` of :func:`continuous_similarity` where a
    categorical decision's is ``[x_d != y_d]``."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = list(counts)
        #: the categorical decisions and the continuous ones (``0`` options)
        self._cat = [i for i, c in enumerate(self.counts) if c > 0]
        self._cont = [i for i, c in enumerate(self.counts) if c == 0]
        cat_counts = [self.counts[i] for i in self._cat]
        self._cat_counts = cat_counts
        self._width = sum(cat_counts)  # one-hot columns; then u and presence per continuous
        self.offsets = np.concatenate([[0], np.cumsum(cat_counts)[:-1]]).astype(np.int64)
        self.params = np.array([_PRIOR_THETA] * len(counts)
                               + [_PRIOR_NOISE, _PRIOR_SIGNAL, _PRIOR_ADDITIVE])

    # -- kernel -------------------------------------------------------------------------------
    def one_hot(self, x: np.ndarray) -> np.ndarray:
        """Rows of decision vectors as one-hot rows (float64); with continuous decisions, the
        one-hot columns of the categorical ones, then each continuous one's ``u`` (0 when
        absent), then each one's presence (1 or 0)."""
        if not self._cont:
            out = np.zeros((len(x), sum(self.counts)))
            out[np.arange(len(x))[:, None], x + self.offsets] = 1.0
            return out
        x = np.asarray(x).reshape(-1, len(self.counts))
        c = len(self._cont)
        out = np.zeros((len(x), self._width + 2 * c))
        if self._cat:
            cat = x[:, self._cat].astype(np.int64)
            out[np.arange(len(x))[:, None], cat + self.offsets] = 1.0
        q = x[:, self._cont].astype(np.float64)
        present = q >= 0
        out[:, self._width:self._width + c] = np.where(present, q / UNIT, 0.0)
        out[:, self._width + c:] = present
        return out

    def _weights(self) -> tuple[np.ndarray, float, float]:
        """Decision weights, noise, and the prior variance of a point (signal + additive)."""
        d = len(self.counts)
        return np.exp(self.params[:d]), float(np.exp(self.params[d])), float(
            np.exp(self.params[d + 1]) + np.exp(self.params[d + 2]))

    def cross(self, oh_a: np.ndarray, oh_b: np.ndarray) -> np.ndarray:
        """The kernel between one-hot rows ``oh_a`` and ``oh_b``."""
        d = len(self.counts)
        theta = np.exp(self.params[:d])
        signal, additive = math.exp(self.params[d + 1]), math.exp(self.params[d + 2])
        if not self._cont:
            w = np.repeat(theta, self.counts)
            return (signal * np.exp((oh_a * w) @ oh_b.T - theta.sum())
                    + (additive / d) * (oh_a @ oh_b.T))
        m, c = self._width, len(self._cont)
        theta_cat, theta_cont = theta[self._cat], theta[self._cont]
        a_cat, b_cat = oh_a[:, :m], oh_b[:, :m]
        exponent = (a_cat * np.repeat(theta_cat, self._cat_counts)) @ b_cat.T - theta_cat.sum()
        matches = a_cat @ b_cat.T
        for j in range(c):
            sim = continuous_similarity(oh_a[:, m + j], oh_a[:, m + c + j],
                                        oh_b[:, m + j], oh_b[:, m + c + j])
            exponent -= theta_cont[j] * (1.0 - sim)
            matches += sim
        return signal * np.exp(exponent) + (additive / d) * matches

    def distances(self, x: np.ndarray) -> np.ndarray:
        """The per-decision distances between the rows of ``x``, shape ``(D, n, n)``: the
        mismatch ``[x_d != y_d]`` of a categorical decision, ``1 - S`` of a continuous one."""
        if not self._cont:
            return (x[:, None, :] != x[None, :, :]).transpose(2, 0, 1).astype(np.float64)
        x = np.asarray(x).reshape(-1, len(self.counts))
        out = np.empty((len(self.counts), len(x), len(x)))
        for i in self._cat:
            out[i] = x[:, i, None] != x[None, :, i]
        for i in self._cont:
            q = x[:, i].astype(np.float64)
            present = (q >= 0).astype(np.float64)
            u = np.where(q >= 0, q / UNIT, 0.0)
            out[i] = 1.0 - continuous_similarity(u, present, u, present)
        return out

    # -- hyperparameters ----------------------------------------------------------------------
    @staticmethod
    def _objective(p: np.ndarray, mismatch: np.ndarray, y: np.ndarray
                   ) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood plus the log-normal priors, and its gradient;
        ``mismatch`` holds the per-decision distances (:meth:`distances`), which do not depend
        on the hyperparameters."""
        d = mismatch.shape[0]
        theta, noise, signal = np.exp(p[:d]), math.exp(p[d]), math.exp(p[d + 1])
        additive = math.exp(p[d + 2])
        kf = signal * np.exp(-np.tensordot(theta, mismatch, 1))
        ka = (additive / d) * (d - mismatch.sum(0))
        n = len(y)
        try:
            chol = np.linalg.cholesky(kf + ka + (noise + _JITTER) * np.eye(n))
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(p)
        alpha = cho_solve((chol, True), y)
        value = 0.5 * float(y @ alpha) + float(np.log(np.diag(chol)).sum())
        w = cho_solve((chol, True), np.eye(n)) - np.outer(alpha, alpha)
        grad = np.empty_like(p)
        wk = w * kf
        for i in range(d):
            grad[i] = -0.5 * theta[i] * float(np.sum(wk * mismatch[i]))
        grad[d] = 0.5 * float(np.trace(w)) * noise
        grad[d + 1] = 0.5 * float(np.sum(wk))
        grad[d + 2] = 0.5 * float(np.sum(w * ka))
        mean = np.array([_PRIOR_THETA] * d + [_PRIOR_NOISE, _PRIOR_SIGNAL, _PRIOR_ADDITIVE])
        value += 0.5 * float(((p - mean) ** 2).sum()) / _PRIOR_VAR
        return value, grad + (p - mean) / _PRIOR_VAR

    def fit(self, x: np.ndarray, y: np.ndarray, max_iter: int) -> None:
        """Fit the hyperparameters to decision rows ``x`` and standardised scores ``y``,
        starting from the current ones."""
        mismatch = self.distances(x)
        res = minimize(self._objective, self.params, args=(mismatch, y), jac=True,
                       method="L-BFGS-B", bounds=[(-7.0, 4.0)] * len(self.params),
                       options={"maxiter": max_iter})
        if np.all(np.isfinite(res.x)) and res.fun < 1e9:
            self.params = np.asarray(res.x, dtype=np.float64)


def continuous_similarity(u_a: np.ndarray, p_a: np.ndarray, u_b: np.ndarray,
                          p_b: np.ndarray) -> np.ndarray:
    """The similarity of a continuous decision between rows with places ``u`` and presences
    ``p`` (1 or 0): ``exp(-_ELL * (u_a - u_b)**2)`` when both are present (an RBF of fixed
    length-scale on the dimension's scale), 1 when both are absent, 0 when one is. It is a
    positive semi-definite kernel (a sum of two), so are ``exp(-theta * (1 - S))`` and the
    kernel made of them."""
    both = np.outer(p_a, p_b)
    return (both * np.exp(-_ELL * (u_a[:, None] - u_b[None, :]) ** 2)
            + np.outer(1.0 - p_a, 1.0 - p_b))


class Posterior:
    """The posterior over a fixed candidate pool: built from a batch of training points, then
    grown one point at a time by rank-one Cholesky steps (buffers grow by doubling)."""

    def __init__(self, gp: HammingGP, pool_oh: np.ndarray, train_oh: np.ndarray) -> None:
        self.gp = gp
        self.pool_oh = pool_oh
        _, self.noise, self.signal = gp._weights()
        n = len(train_oh)
        cap = max(16, 2 * n)
        self.n = n
        self.chol = np.zeros((cap, cap))
        self.v = np.zeros((cap, len(pool_oh)))  # chol^-1 K(train, pool)
        self.train_oh = np.zeros((cap, pool_oh.shape[1]))
        self.train_oh[:n] = train_oh
        k = gp.cross(train_oh, train_oh) + (self.noise + _JITTER) * np.eye(n)
        self.chol[:n, :n] = np.linalg.cholesky(k)
        self.v[:n] = solve_triangular(self.chol[:n, :n], gp.cross(train_oh, pool_oh),
                                      lower=True)
        self.var = self.signal - np.einsum("ij,ij->j", self.v[:n], self.v[:n])

    def _grow(self) -> None:
        cap = 2 * len(self.chol)
        chol = np.zeros((cap, cap))
        chol[:self.n, :self.n] = self.chol[:self.n, :self.n]
        v = np.zeros((cap, self.v.shape[1]))
        v[:self.n] = self.v[:self.n]
        train = np.zeros((cap, self.train_oh.shape[1]))
        train[:self.n] = self.train_oh[:self.n]
        self.chol, self.v, self.train_oh = chol, v, train

    def add(self, oh: np.ndarray) -> None:
        """One more training point (a one-hot row)."""
        n = self.n
        if n == len(self.chol):
            self._grow()
        k_pool = self.gp.cross(oh[None, :], self.pool_oh)[0]
        k_train = self.gp.cross(oh[None, :], self.train_oh[:n])[0]
        ell = solve_triangular(self.chol[:n, :n], k_train, lower=True)
        diag = math.sqrt(max(self.signal + self.noise + _JITTER - float(ell @ ell), 1e-12))
        self.chol[n, :n] = ell
        self.chol[n, n] = diag
        row = (k_pool - ell @ self.v[:n]) / diag
        self.v[n] = row
        self.var -= row * row
        self.train_oh[n] = oh
        self.n = n + 1

    def predict(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = solve_triangular(self.chol[:self.n, :self.n], y, lower=True)
        return w @ self.v[:self.n], np.sqrt(np.maximum(self.var, 1e-12))


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / std
    return (mean - best) * ndtr(z) + std * _INV_SQRT_2PI * np.exp(-0.5 * z * z)
