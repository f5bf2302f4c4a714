"""Multi-fidelity Bayesian optimisation (``bohb``): :mod:`~nastk.strategies.bayesian`'s Gaussian
process fed with every rung a scheduler (successive halving, ASHA, Hyperband) reports.

The data. :meth:`Strategy.tell_fidelity` gives the score of an architecture trained up to a
resource (epochs: 1, 3, 9; NAS-Bench-201's 12 and 200); every such observation is kept, per
resource level, in the order it came (a failed one, score ``None``, teaches nothing). The final
results that :meth:`tell` gives go to ``bo``'s history as in ``bo``; while a scheduler is
reporting rungs, a final result whose resource (``info["resource"]``) already came through
``tell_fidelity`` is not counted again, and one that did not (a cached result, a replay) joins
its level.

The model. As in BOHB (Falkner et al., 2018), the target is the highest resource level with at
least ``min_points`` observations (default: the number of decisions + 1, BOHB's choice for its
density model): the best information that is plentiful enough to model. Unlike BOHB, the lower
levels are not thrown away: the GP's decision vector gets one more decision, the fidelity
(``target`` or ``lower``), so the kernel multiplies the architecture similarity by a learnt
factor ``exp(-theta_f)`` between a target and a lower-level observation. This is the
Hamming-kernel form of a two-task (intrinsic coregionalisation) GP: the fitted ``theta_f`` says
how far the cheap rungs are to be trusted, from nearly as much as a target score (12 against
200 epochs on NAS-Bench-201: Spearman 0.82 on CIFAR-10) to nothing (``theta_f`` large); the
additive term, which is shared, carries what a single choice is worth at any fidelity. Every
observation at or below the target is one training point, a lower one included when the
architecture also reached the target (the two are observations of two tasks, not one result
counted twice); several lower levels (1, 3 and 9 epochs under a target of 27) share the one
``lower`` value; observations above the target wait until their level has ``min_points``. Scores
are transformed (``transform``) within their own level, since the levels differ in scale
(12-epoch accuracies are lower). Proposals are those of ``bo`` (the same pool, exclusions and
acquisition; in a sampled pool, the neighbours of the best target-level architectures) on the
model's prediction at the target fidelity; expected improvement is over the best target-level
score. The alternative, lower-level points as target points with a larger,
fixed noise, needs per-point noise in the GP and a guess of that noise; the fidelity input
learns it for one more hyperparameter and reuses ``bo``'s GP untouched.

The cost. Observations at levels up to the target enter in arrival order, so between refits
each new one is a rank-one update of the posterior over the enumerated pool, as in ``bo``.
The hyperparameters are refitted when the target level changes and on ``bo``'s geometric
schedule; a fit uses at most ``fit_limit`` training points (the latest of each fidelity, half
and half, so that the fidelity factor stays identified), which bounds its cubic cost; the
posterior always uses all of them.

Without ``tell_fidelity`` calls this is ``bo``, proposal for proposal. Before a level reaches
``min_points`` (or fewer than ``warmup`` architectures have a rung result), it proposes as
``bo`` does on the final results told: uniformly at random during warm-up, then ``bo``'s model.

Resuming is exact: the state adds the rung observations in order, the target level, the fitted
hyperparameters and when they were fitted; loading rebuilds the posterior through the same
fits and rank-one updates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field
from scipy.special import ndtri
from scipy.stats import rankdata

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import draw_unseen
from nastk.strategies.bayesian import BayesianOptimisation, BayesianOptions
from nastk.strategies.hamming_gp import HammingGP, Posterior

__all__ = ["MultiFidelityBO", "MultiFidelityOptions"]

#: one rung observation: the decisions, the resource, the score
Observation = tuple[list[int], float, float]


class MultiFidelityOptions(BayesianOptions):
    """Options of :class:`MultiFidelityBO`: ``bo``'s, plus the choice of the target level."""

    min_points: int | None = Field(
        None, ge=2, description="observations a resource level needs to become the model's "
                                "target (default: the number of decisions + 1, as in BOHB)")
    lower_levels: bool = Field(
        True, description="also train on the levels below the target, the fidelity as one more "
                          "input (false: the target level only, as BOHB does)")
    fit_limit: int = Field(
        150, ge=10, description="at most this many training points per hyperparameter fit "
                                "(the latest of each fidelity, half and half)")


class MultiFidelityBO(BayesianOptimisation):
    """BOHB-style Bayesian optimisation: bo's GP on every scheduler rung, fidelity as an input.

    The module docstring describes the model, its data and its cost."""

    Options = MultiFidelityOptions
    #: its multi-fidelity model does not read an earlier tasks' prior (bo does)
    supports_warm_start = False

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        self.min_points = (self.options.min_points if self.options.min_points is not None
                           else len(self.counts) + 1)
        self.mf_gp = HammingGP([*self.counts, 2])  # the fidelity: 0 target, 1 lower
        self._rungs: list[Observation] = []  # valid rung observations, in arrival order
        self._rung_keys: list[str] = []  # the architecture of each
        self._rung_told: set[tuple[str, float]] = set()  # (key, resource) reported, failed too
        self._mf_target: float | None = None  # the target level of the last fit
        self._mf_fitted_at = -1  # training points at the last fit
        self._mf_next_fit = 0
        self._mf_posterior: Posterior | None = None
        self._mf_pool_oh: np.ndarray | None = None

    # -- observations -------------------------------------------------------------------------
    def levels(self) -> dict[float, list[tuple[list[int], float]]]:
        """The valid rung observations per resource level (ascending): decisions and score, in
        the order they came."""
        out: dict[float, list[tuple[list[int], float]]] = {}
        for d, r, s in sorted(self._rungs, key=lambda o: o[1]):  # stable: arrival order kept
            out.setdefault(r, []).append((list(d), s))
        return out

    def _observe(self, arch: Architecture, resource: Any, result: Result) -> None:
        """Keep ``result`` at ``resource`` unless that pair came before (a failure too)."""
        try:
            r = float(resource)
        except (TypeError, ValueError):
            return
        if not math.isfinite(r) or (arch.key, r) in self._rung_told:
            return
        self._rung_told.add((arch.key, r))
        score = self.objective.score(result)
        if score is None or not math.isfinite(score):
            return
        self._rungs.append((self._encode(arch), r, float(score)))
        self._rung_keys.append(arch.key)

    def tell_fidelity(self, arch: Architecture, resource: float, result: Result) -> None:
        self._seen.add(arch.key)
        self._exclude(arch)
        self._observe(arch, resource, result)

    def tell(self, arch: Architecture, result: Result) -> None:
        if self._rung_told:  # a scheduler reports rungs: a final result not seen there joins
            resource = result.info.get("resource")
            if resource is not None:
                self._observe(arch, resource, result)
        super().tell(arch, result)

    # -- the target level and the training data -----------------------------------------------
    def _target(self) -> float | None:
        """The highest level with ``min_points`` observations, once ``warmup`` architectures
        have a rung result; else ``None`` (``bo``'s behaviour)."""
        if len(set(self._rung_keys)) < self.options.warmup:
            return None
        counts: dict[float, int] = {}
        for _, r, _ in self._rungs:
            counts[r] = counts.get(r, 0) + 1
        ready = [r for r, c in counts.items() if c >= self.min_points]
        return max(ready) if ready else None

    def _training(self, target: float) -> list[Observation]:
        """The observations the model trains on for ``target``, in arrival order (so the list
        only grows while the target stays)."""
        if self.options.lower_levels:
            return [o for o in self._rungs if o[1] <= target]
        return [o for o in self._rungs if o[1] == target]

    def _mf_rows(self, train: list[Observation], target: float) -> np.ndarray:
        rows = np.array([[*d, 0 if r == target else 1] for d, r, _ in train], dtype=np.int64)
        return rows.reshape(-1, len(self.counts) + 1)

    def _mf_scores(self, train: list[Observation]) -> np.ndarray:
        """The scores transformed (``transform``) within each level."""
        y = np.array([s for _, _, s in train])
        r = np.array([r for _, r, _ in train])
        out = np.zeros(len(y))
        for level in np.unique(r):
            m = r == level
            v = y[m]
            if self.options.transform == "rank":
                out[m] = ndtri((rankdata(v) - 0.5) / len(v))
            else:
                out[m] = (v - v.mean()) / (v.std() + 1e-12)
        return out

    def _mf_refit_if_due(self, target: float, train: list[Observation]) -> None:
        n = len(train)
        if target == self._mf_target and n < self._mf_next_fit:
            return
        rows, y = self._mf_rows(train, target), self._mf_scores(train)
        limit = self.options.fit_limit
        if n > limit:  # the latest of each fidelity, half and half where both have enough
            top = [i for i in range(n) if rows[i, -1] == 0]
            low = [i for i in range(n) if rows[i, -1] == 1]
            n_top = min(len(top), max(limit // 2, limit - len(low)))
            keep = np.array(sorted(top[len(top) - n_top:] + low[len(low) - (limit - n_top):]),
                            dtype=np.int64)
            rows, y = rows[keep], y[keep]
        self.mf_gp.fit(rows, y, self.options.max_iter)
        self._mf_target = target
        self._mf_fitted_at = n
        self._mf_next_fit = max(n + 1, math.ceil(n * self.options.refit_growth))
        self._mf_posterior = None

    # -- ask ----------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        if not self._rung_told:
            return super().ask(n)  # no scheduler: exactly bo
        out: list[Architecture] = []
        while len(out) < n:
            target = self._target()
            if target is not None:
                arch = self._mf_pick(target)
            elif len(self._history) >= self.options.warmup:
                arch = self._pick()
            else:
                out.append(draw_unseen(self.space, self.rng, self._seen))
                continue
            self._seen.add(arch.key)
            out.append(arch)
        return out

    def _mf_pick(self, target: float) -> Architecture:
        train = self._training(target)
        self._mf_refit_if_due(target, train)
        y = self._mf_scores(train)
        best = float(y[self._mf_rows(train, target)[:, -1] == 0].max())
        if self._enumerate:
            self._whole_space()
            post = self._mf_current_posterior(train, target)
            mean, std = post.predict(y)
            return self._best_of_pool(self._acquire(mean, std, best))
        cands = self._mf_sampled_pool([o for o in train if o[1] == target])
        if not cands:
            return draw_unseen(self.space, self.rng, self._seen)
        x = np.array([self._encode(a) for a in cands], dtype=np.int64)
        post = Posterior(self.mf_gp, self._at_target(x),
                          self.mf_gp.one_hot(self._mf_rows(train, target)))
        mean, std = post.predict(y)
        return cands[int(np.argmax(self._acquire(mean, std, best)))]

    def _mf_sampled_pool(self, top: list[Observation]) -> list[Architecture]:
        """``bo``'s sampled pool, the neighbours taken of the best target-level architectures
        (``bo``'s history mixes the final results of every level)."""
        pool: dict[str, Architecture] = {}
        for _ in range(self.options.pool_size):
            arch = self.space.sample(self.rng)
            if arch.key not in self._seen:
                pool.setdefault(arch.key, arch)
        best = sorted(range(len(top)), key=lambda i: -top[i][2])
        for i in best[:self.options.local_best]:
            for nb in self.space.neighbours(self._decode(top[i][0])):
                if nb.key not in self._seen:
                    pool.setdefault(nb.key, nb)
        return list(pool.values())

    def _at_target(self, x: np.ndarray) -> np.ndarray:
        """One-hot rows of decision rows ``x`` at the target fidelity."""
        return self.mf_gp.one_hot(np.hstack([x, np.zeros((len(x), 1), dtype=np.int64)]))

    def _mf_current_posterior(self, train: list[Observation], target: float) -> Posterior:
        """As ``bo``'s: built on the training points of the last fit, then brought up to all
        of them by rank-one updates."""
        if self._mf_pool_oh is None:
            self._mf_pool_oh = self._at_target(self._pool)
        rows = self._mf_rows(train, target)
        if self._mf_posterior is None:
            self._mf_posterior = Posterior(self.mf_gp, self._mf_pool_oh,
                                            self.mf_gp.one_hot(rows[:self._mf_fitted_at]))
        post = self._mf_posterior
        for oh in self.mf_gp.one_hot(rows[post.n:]):
            post.add(oh)
        return post

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "rungs": [(list(d), r, s) for d, r, s in self._rungs],
                "rung_keys": list(self._rung_keys),
                "rung_told": sorted([k, r] for k, r in self._rung_told),
                "mf_target": self._mf_target, "mf_fitted_at": self._mf_fitted_at,
                "mf_next_fit": self._mf_next_fit, "mf_params": self.mf_gp.params.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._rungs = [([int(i) for i in d], float(r), float(s)) for d, r, s in state["rungs"]]
        self._rung_keys = [str(k) for k in state["rung_keys"]]
        self._rung_told = {(str(k), float(r)) for k, r in state["rung_told"]}
        target = state["mf_target"]
        self._mf_target = None if target is None else float(target)
        self._mf_fitted_at = int(state["mf_fitted_at"])
        self._mf_next_fit = int(state["mf_next_fit"])
        self.mf_gp.params = np.asarray(state["mf_params"], dtype=np.float64)
        self._mf_posterior = None
        self._mf_pool_oh = None
