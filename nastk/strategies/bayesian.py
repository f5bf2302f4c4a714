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
from scipy.special import ndtri
from scipy.stats import rankdata

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.continuous import Float
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen
from nastk.strategies.hamming_gp import UNIT, HammingGP, Posterior, expected_improvement
from nastk.transfer.prior import TransferPrior

__all__ = ["BayesianOptimisation", "BayesianOptions"]

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
        self._posterior: Posterior | None = None
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
                out.append(-1 if u is None else round(u * UNIT))
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
                values[d.name] = d.from_unit(max(chunk[0], 0) / UNIT)
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
                try:  # an invalid row is never proposed: its prior stays 0
                    archs.append(self._decode([int(i) for i in row]))
                except (ValueError, InvalidArchitectureError):
                    continue
                rows.append(r)
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
        post = Posterior(self.gp, self.gp.one_hot(x), self._history_oh(0, len(self._history)))
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

    def _current_posterior(self) -> Posterior:
        """The posterior for the latest fit: built on the history as it was at that fit, then
        brought up to the whole history point by point (a resumed run takes the same steps)."""
        if self._posterior is None:
            self._posterior = Posterior(self.gp, self._pool_oh,
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
