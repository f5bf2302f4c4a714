"""Bayesian optimisation over a space's decisions: a Gaussian process with a per-decision
(ARD) Hamming kernel, smooth in continuous dimensions, expected improvement over a candidate
pool that covers the space, updated incrementally.

The model. Every architecture is its vector of decisions (:meth:`SearchSpace.decisions`). The
kernel between two of them is ``s * exp(-sum_d theta_d * [x_d != y_d]) + a * matches / D``:
the first term gives each decision its own weight ``theta_d``, learnt, so the model finds which
choices matter and how they interact (on NAS-Bench-201, the edge that carries the residual);
the second, additive in the decisions, carries what one choice is worth anywhere in the space,
which generalises from few results. The scores the model sees are the normal quantiles of
their ranks (``transform: rank``): a long tail of poor architectures (10% accuracy on NB201)
would otherwise set the scale and blur the differences at the top. The hyperparameters (the
weights, ``s``, ``a`` and the noise) maximise the marginal likelihood under weak log-normal
priors, by L-BFGS warm-started from the last fit, on a geometric schedule (after ``warmup``
results, then each time the history has grown by ``refit_growth``).

The candidates. When the space has at most ``pool_limit`` decision combinations, the pool is the
whole space, enumerated once; between refits, each new result updates the posterior of every
candidate with a rank-one Cholesky step (linear in the pool size), so an ask costs a few
milliseconds. A larger space gets a fresh pool per ask: ``pool_size`` uniform samples plus every
single-decision change of the ``local_best`` best architectures so far (with continuous
dimensions, also Gaussian variations of their real values: below). The acquisition is
expected improvement over the best standardised score (``ucb``: mean + ``kappa`` * std).
Candidates already proposed, or rejected by the space's rules, are never proposed again.

Conditional and continuous dimensions (:mod:`nastk.space.conditions`,
:class:`~nastk.space.continuous.Float`). Each decision of a conditional categorical dimension
gets one more option, *absent*, so the kernel tells a layer that does not exist from its first
choice. A real number is a *continuous decision* (``0`` options to :class:`HammingGP`): its
place ``u`` in [0, 1] on its own (linear or log) scale, held as the integer ``round(u * 2**30)``
(``-1`` when the dimension is absent) so that decision vectors, the history and the state stay
integer rows. Where a categorical decision's distance is the mismatch ``[x_d != y_d]``, a
continuous one's is ``1 - S`` with the similarity ``S = exp(-4 (u_x - u_y)**2)`` (an RBF of
fixed length-scale 1/sqrt(8) of the range), ``S = 1`` when both are absent and ``S = 0`` when
exactly one is (as far as a categorical mismatch); the learnt weight ``theta_d`` then sets how
fast the similarity falls (for near values ``exp(-4 theta_d (u_x - u_y)**2)``, a learnt
length-scale), and ``S`` is the decision's term in the additive part, in place of a match.
``S`` is positive semi-definite, so is ``exp(-theta_d (1 - S))`` and the whole kernel; the
simpler distance ``(u_x - u_y)**2`` with 1 for one absent value is not (three values and an
absent one break it for small ``theta_d``). A space with a continuous dimension is never
enumerated (it is infinite): its pool is the sampled one, whose uniform samples hold real
values, plus, for each of the ``local_best`` best, 24 variants whose real values move by a
Gaussian step on their scale (standard deviation 0.1 and 0.03 of the range, alternately), the
other dimensions kept; so ``bo`` proposes real values, not grid points (a neighbour, from
:meth:`SearchSpace.neighbours`, still moves a real value to the next grid point). A space
without continuous dimensions is modelled exactly as before they were handled, number for
number.

Warm starts (``warm_start:``, :mod:`nastk.transfer.prior`). Once the earlier tasks' prior has
measured weights, the warm-up proposals are the earlier tasks' best unseen architectures by it
(random samples before); afterwards the GP models the residual of the standardised scores over
``beta * prior`` (``beta`` their least-squares slope on the prior, at least 0, refitted at every
ask), the acquisition reads ``beta * prior`` plus the GP's mean, and in a sampled pool the
earlier tasks' ``2 * local_best`` best unseen architectures join the candidates.

Resuming is exact: the state is the history in order, the fitted hyperparameters and when they
were fitted; loading it rebuilds the posterior through the same sequence of fits and rank-one
updates, so every later number is bit-identical.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.linalg import cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.continuous import Float
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen
from nastk.transfer.prior import TransferPrior

__all__ = ["BayesianOptimisation", "HammingGP"]

#: prior means (log scale) of the per-decision weight, the noise, the signal variance and the
#: additive variance
_PRIOR_THETA, _PRIOR_NOISE, _PRIOR_SIGNAL = math.log(0.5), math.log(0.05), 0.0
_PRIOR_ADDITIVE = math.log(0.3)
_PRIOR_VAR = 4.0
_JITTER = 1e-6
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: a continuous decision's place on its scale, u in [0, 1], is held as the integer
#: ``round(u * _UNIT)`` (``-1``: absent), so decision vectors stay integer rows
_UNIT = float(2 ** 30)
#: the fixed inverse squared length-scale (on the unit scale) of a continuous similarity
_ELL = 4.0
#: Gaussian variations of the continuous values of each of the ``local_best`` best, per ask,
#: and the standard deviations (on the unit scale) they cycle through
_PERTURB = 24
_PERTURB_SCALES = (0.1, 0.03)


class BayesianOptions(BaseModel):
    """Options of :class:`BayesianOptimisation`."""

    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(20, ge=2, description="uniformly random evaluations before the model "
                                                "is first fitted")
    acquisition: Literal["ei", "ucb"] = Field("ei", description="expected improvement, or "
                                                                "mean + kappa * std")
    transform: Literal["rank", "standardise"] = Field(
        "rank", description="how scores are fed to the model: 'rank', the normal quantiles of "
                            "their ranks (robust to a long tail of poor architectures); "
                            "'standardise', zero mean and unit variance")
    kappa: float = Field(2.0, ge=0.0, description="exploration weight of 'ucb'")
    refit_growth: float = Field(1.3, gt=1.0, description="refit the hyperparameters when the "
                                                         "history has grown by this factor")
    max_iter: int = Field(40, ge=1, description="L-BFGS iterations per hyperparameter fit")
    pool_limit: int = Field(50_000, ge=1, description="enumerate the whole space as the "
                                                      "candidate pool up to this size")
    pool_size: int = Field(2_000, ge=1, description="uniform samples per ask in a larger space")
    local_best: int = Field(5, ge=0, description="in a larger space, also every single-decision "
                                                 "change of this many best architectures")


class HammingGP:
    """A Gaussian process on decision vectors with the ARD Hamming kernel plus an additive one
    (module docstring); hyperparameters in log scale: ``D`` weights, then the noise, the
    signal variance and the additive variance.

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
        out[:, self._width:self._width + c] = np.where(present, q / _UNIT, 0.0)
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
            u = np.where(q >= 0, q / _UNIT, 0.0)
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


class _Posterior:
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


class BayesianOptimisation(Strategy):
    """Gaussian-process Bayesian optimisation over the space's decisions (module docstring)."""

    Options = BayesianOptions
    supports_warm_start = True

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        self.counts = space.decisions()
        #: with conditional dimensions, each decision of a conditional dimension has one more
        #: option, "absent": the kernel then tells an absent dimension from its first value
        self._absent: list[int] | None = None
        if getattr(space, "conditional", False):
            self._absent = []
            for d in space.dimensions:
                k = len(d.decisions())
                self._absent.extend([1] * k if d.when else [0] * k)
            self.counts = [n + a for n, a in zip(self.counts, self._absent, strict=True)]
        #: the continuous dimensions (:class:`Float`): each one decision, ``0`` options to the
        #: GP (a continuous decision); the space is then never enumerated
        self._floats = [d for d in space.dimensions if isinstance(d, Float)]
        if self._floats:
            pos = 0
            for d in space.dimensions:
                if isinstance(d, Float):
                    self.counts[pos] = 0
                pos += len(d.decisions())
        self.gp = HammingGP(self.counts)
        self._strides = np.cumprod([1, *self.counts[::-1]])[:-1][::-1].astype(np.int64)
        self._enumerate = (not self._floats
                           and math.prod(self.counts) <= self.options.pool_limit)
        self._history: list[tuple[list[int], float]] = []
        self._told: set[str] = set()
        self._seen: set[str] = set()  # proposed or told
        self._fitted_at = -1  # history length at the last hyperparameter fit
        self._next_fit = self.options.warmup
        self._posterior: _Posterior | None = None
        self._pool: np.ndarray | None = None
        self._pool_oh: np.ndarray | None = None
        self._excluded: np.ndarray | None = None
        #: warm-started: the told architectures in history order (the prior's weights and
        #: values), and the sources' values over the whole-space pool (computed once)
        self._history_archs: list[Architecture] = []
        self._pool_sources: np.ndarray | None = None

    # -- the decision vectors the model sees ---------------------------------------------------
    def _encode(self, arch: Architecture) -> list[int]:
        """``arch``'s decisions; an absent conditional dimension's are its "absent" option; a
        continuous one's is its place on its scale in units of ``2**-30`` (``-1``: absent)."""
        if self._absent is None and not self._floats:
            return self.space.to_decisions(arch)
        out: list[int] = []
        for d in self.space.dimensions:
            present = not d.when or d.name in arch
            if isinstance(d, Float):
                u = min(max(d.to_unit(float(arch[d.name])), 0.0), 1.0) if present else None
                out.append(-1 if u is None else round(u * _UNIT))
            elif present:
                out.extend(d.to_decisions(arch[d.name]))
            else:
                out.extend(d.decisions())
        return out

    def _decode(self, decisions: list[int]) -> Architecture:
        """The architecture of a decision vector (an "absent" option read as the first: the
        space's conditions decide which dimensions exist)."""
        if self._floats:
            return self._decode_mixed(decisions)
        if self._absent is None:
            return self.space.from_decisions(decisions)
        plain = [0 if a and i == n - 1 else i
                 for i, n, a in zip(decisions, self.counts, self._absent, strict=True)]
        return self.space.from_decisions(plain)

    def _decode_mixed(self, decisions: list[int]) -> Architecture:
        """:meth:`_decode` with continuous dimensions: each one's value read off its place (an
        absent one's is dropped by the space's conditions)."""
        values: dict[str, Any] = {}
        pos = 0
        absent = self._absent or [0] * len(self.counts)
        for d in self.space.dimensions:
            k = len(d.decisions())
            chunk = [int(i) for i in decisions[pos:pos + k]]
            if isinstance(d, Float):
                values[d.name] = d.from_unit(max(chunk[0], 0) / _UNIT)
            else:
                values[d.name] = d.from_decisions(
                    [0 if absent[pos + j] and i == self.counts[pos + j] - 1 else i
                     for j, i in enumerate(chunk)])
            pos += k
        return self.space.canonical(self.space.complete(values))

    # -- the candidate pool -------------------------------------------------------------------
    def _whole_space(self) -> None:
        if self._pool is None:
            grids = np.indices(self.counts).reshape(len(self.counts), -1).T
            self._pool = np.ascontiguousarray(grids, dtype=np.int64)
            self._pool_oh = self.gp.one_hot(self._pool)
            self._excluded = np.zeros(len(self._pool), dtype=bool)
            for key in self._seen:
                self._exclude(Architecture.from_json(key))

    def _row(self, decisions: list[int]) -> int:
        return int(np.dot(decisions, self._strides))

    def _exclude(self, arch: Architecture) -> None:
        if self._excluded is None:
            return
        try:
            row = self._row(self._encode(arch))
        except (KeyError, TypeError, ValueError, InvalidArchitectureError):
            return  # not an architecture of this space: nothing to exclude
        self._excluded[row] = True

    # -- ask / tell ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        out: list[Architecture] = []
        while len(out) < n:
            if len(self._history) < self.options.warmup:
                arch = self._from_prior()
                out.append(arch if arch is not None
                           else draw_unseen(self.space, self.rng, self._seen))
                continue
            arch = self._pick()
            self._seen.add(arch.key)
            out.append(arch)
        return out

    # -- warm start ---------------------------------------------------------------------------
    def use_warm_start(self, prior: TransferPrior) -> None:
        if self._history:
            raise ConfigError("bo: give the warm start before the first result (this strategy "
                              f"already holds {len(self._history)} results)")
        super().use_warm_start(prior)

    def _observed(self) -> list[tuple[Architecture, float]]:
        return [(a, s) for a, (_, s) in zip(self._history_archs, self._history, strict=True)]

    def _from_prior(self) -> Architecture | None:
        """Warm-started: the earlier tasks' best unseen architecture while their prior has
        weights (then marked seen); else ``None``."""
        if self.warm_start is None:
            return None
        arch = self.warm_start.best_unseen(self._observed(), self._seen)
        if arch is not None:
            self._seen.add(arch.key)
        return arch

    def _prior_part(self, y: np.ndarray) -> tuple[float, np.ndarray | None, np.ndarray]:
        """Warm-started: ``beta``, the sources' weights and the residual ``y - beta * prior``
        the GP models (:meth:`TransferPrior.residual`); ``(0, None, y)`` cold or while the
        prior says nothing."""
        if self.warm_start is None:
            return 0.0, None, y
        return self.warm_start.residual(self._observed(), y)

    def _pool_prior(self, w: np.ndarray) -> np.ndarray:
        """The prior of every row of the whole-space pool under weights ``w``."""
        assert self.warm_start is not None and self._pool is not None
        if self._pool_sources is None:
            rows, archs = [], []
            for r, row in enumerate(self._pool):
                try:
                    archs.append(self._decode([int(i) for i in row]))
                    rows.append(r)
                except (ValueError, InvalidArchitectureError):
                    pass  # never proposed: its prior stays 0
            self._pool_sources = np.zeros((len(self._pool), len(self.warm_start.sources)))
            self._pool_sources[rows] = self.warm_start.source_values(archs)
        return self._pool_sources @ (w / w.sum())

    def _scores(self) -> np.ndarray:
        y = np.array([s for _, s in self._history])
        if self.options.transform == "rank":  # ties share their mean rank
            return ndtri((rankdata(y) - 0.5) / len(y))
        return (y - y.mean()) / (y.std() + 1e-12)

    def _acquire(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        if self.options.acquisition == "ucb":
            return mean + self.options.kappa * std
        return expected_improvement(mean, std, best)

    def _pick(self) -> Architecture:
        self._refit_if_due()
        y = self._scores()
        beta, w, residual = self._prior_part(y)
        if self._enumerate:
            self._whole_space()
            post = self._current_posterior()
            mean, std = post.predict(residual)
            if w is not None:
                mean = mean + beta * self._pool_prior(w)
            return self._best_of_pool(self._acquire(mean, std, float(y.max())))
        cands = self._sampled_pool()
        if w is not None:  # the earlier tasks' best unseen join the pool
            assert self.warm_start is not None
            known = {a.key for a in cands}
            cands += [a for a in self.warm_start.top_unseen(w, self._seen,
                                                            self.options.local_best * 2)
                      if a.key not in known]
        if not cands:
            return draw_unseen(self.space, self.rng, self._seen)
        x = np.array([self._encode(a) for a in cands], dtype=np.int64)
        post = _Posterior(self.gp, self.gp.one_hot(x), self._history_oh(0, len(self._history)))
        mean, std = post.predict(residual)
        if w is not None:
            assert self.warm_start is not None
            mean = mean + beta * self.warm_start.values(cands, w)  # type: ignore[operator]
        return cands[int(np.argmax(self._acquire(mean, std, float(y.max()))))]

    def _best_of_pool(self, value: np.ndarray) -> Architecture:
        """The valid, never proposed candidate of the whole-space pool with the largest
        acquisition ``value`` (rows tried are excluded for good); a fresh sample once the
        space is exhausted."""
        value[self._excluded] = -np.inf
        for _ in range(len(value)):
            row = int(np.argmax(value))
            if value[row] == -np.inf:
                break
            self._excluded[row] = True
            value[row] = -np.inf
            arch = self._valid_unseen(self._pool[row])
            if arch is not None:
                return arch
        return draw_unseen(self.space, self.rng, self._seen)  # the space is exhausted

    def _valid_unseen(self, decisions: np.ndarray) -> Architecture | None:
        try:
            arch = self._decode([int(i) for i in decisions])
        except (ValueError, InvalidArchitectureError):
            return None
        if arch.key in self._seen or not self.space.is_valid(arch):
            return None
        return arch

    def _sampled_pool(self) -> list[Architecture]:
        pool: dict[str, Architecture] = {}
        for _ in range(self.options.pool_size):
            arch = self.space.sample(self.rng)
            if arch.key not in self._seen:
                pool.setdefault(arch.key, arch)
        best = sorted(range(len(self._history)), key=lambda i: -self._history[i][1])
        for i in best[:self.options.local_best]:
            arch = self._decode(self._history[i][0])
            for nb in self.space.neighbours(arch):
                if nb.key not in self._seen:
                    pool.setdefault(nb.key, nb)
            if self._floats:
                self._perturbed(arch, pool)
        return list(pool.values())

    def _perturbed(self, arch: Architecture, pool: dict[str, Architecture]) -> None:
        """Add to ``pool`` ``_PERTURB`` variants of ``arch`` whose continuous values each move
        by a Gaussian step on their scale (standard deviations cycling through
        ``_PERTURB_SCALES``), the rest kept."""
        for k in range(_PERTURB):
            sigma = _PERTURB_SCALES[k % len(_PERTURB_SCALES)]
            values = dict(arch)
            for d in self._floats:
                if d.name in values:
                    u = d.to_unit(float(values[d.name])) + float(self.rng.normal(0.0, sigma))
                    values[d.name] = d.from_unit(u)
            try:
                cand = self.space.validate(values)
            except InvalidArchitectureError:
                continue
            if cand.key not in self._seen:
                pool.setdefault(cand.key, cand)

    def _refit_if_due(self) -> None:
        n = len(self._history)
        if n < self._next_fit:
            return
        x = np.array([d for d, _ in self._history], dtype=np.int64)
        _, _, residual = self._prior_part(self._scores())  # the scores themselves when cold
        self.gp.fit(x, residual, self.options.max_iter)
        self._fitted_at = n
        self._next_fit = max(n + 1, math.ceil(n * self.options.refit_growth))
        self._posterior = None

    def _history_oh(self, start: int, stop: int) -> np.ndarray:
        rows = np.array([d for d, _ in self._history[start:stop]], dtype=np.int64)
        return self.gp.one_hot(rows.reshape(-1, len(self.counts)))

    def _current_posterior(self) -> _Posterior:
        """The posterior for the latest fit: built on the history as it was at that fit, then
        brought up to the whole history point by point (a resumed run takes the same steps)."""
        if self._posterior is None:
            self._posterior = _Posterior(self.gp, self._pool_oh,
                                         self._history_oh(0, self._fitted_at))
        post = self._posterior
        for oh in self._history_oh(post.n, len(self._history)):
            post.add(oh)
        return post

    def tell(self, arch: Architecture, result: Result) -> None:
        self._seen.add(arch.key)
        self._exclude(arch)
        if arch.key in self._told:
            return
        self._told.add(arch.key)
        score = self.objective.score(result)
        if score is None or not math.isfinite(score):
            return
        self._history.append((self._encode(arch), float(score)))
        if self.warm_start is not None:
            self._history_archs.append(arch)

    def curves(self) -> dict[str, list[float]]:
        if self.warm_start is None:
            return {}
        return self.warm_start.weight_curves(self._observed())

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(),
                 "history": [(list(d), s) for d, s in self._history],
                 "told": sorted(self._told), "seen": sorted(self._seen),
                 "fitted_at": self._fitted_at, "next_fit": self._next_fit,
                 "params": self.gp.params.tolist()}
        if self.warm_start is not None:
            state["history_archs"] = [a.to_json() for a in self._history_archs]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._history = [([int(i) for i in d], float(s)) for d, s in state["history"]]
        self._told = set(state["told"])
        self._seen = set(state["seen"])
        self._fitted_at = int(state["fitted_at"])
        self._next_fit = int(state["next_fit"])
        self.gp.params = np.asarray(state["params"], dtype=np.float64)
        self._history_archs = [Architecture.from_json(a)
                               for a in state.get("history_archs", [])]
        if self.warm_start is not None and len(self._history_archs) != len(self._history):
            # a state saved before the warm start (cold): the architectures from the decisions
            self._history_archs = [self._decode(d) for d, _ in self._history]
        self._pool = self._pool_oh = self._excluded = None
        self._posterior = None
