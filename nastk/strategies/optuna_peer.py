"""Optuna's samplers as nastk strategies: the peers a user would otherwise pick, one line away.

``strategy: {name: optuna, options: {sampler: tpe}}`` runs Optuna's TPE sampler (``tpe``: its
default, independent per parameter; ``tpe_multivariate``: the multivariate TPE; ``gp``: the
Gaussian-process sampler) through Optuna's ask/tell interface. Every decision of the space
(:meth:`SearchSpace.decisions`, one per categorical choice) is one categorical parameter, so any
space works. A sampled combination that the space rejects (a cross-dimension rule) is told to
Optuna as a finished trial with the worst value told so far (as failed before any value), so
the sampler learns to avoid the region, and resampled, up to ``max_invalid`` times, then drawn
uniformly. (Told as failed, Optuna's samplers learn nothing and, past their start-up trials,
propose the same combination again: on ``tnb101_macro``, where about half of the decision
combinations are invalid, 47 of 100 TPE proposals ended as uniform draws that way, against 0-2
with the penalty; tests/test_optuna_peer.py.) On the unconstrained spaces (NAS-Bench-201, the
TransNAS-Bench-101 cell) no draw is rejected.

A space with conditional dimensions, real numbers (:class:`~nastk.space.continuous.Float`) or
log-scale integers is searched through Optuna's define-by-run API instead: one parameter per
dimension that is active, asked in the space's order so that a condition reads the values
already drawn (Optuna's samplers then treat a parameter absent from a trial as such), a
categorical dimension as a categorical parameter, an integer range as an integer one with its
step or log scale, a real number as a float one with its log scale, and a stage list or a cell
as one categorical parameter per decision. The other spaces keep the decision parameters
above, so their proposals are those of earlier versions.

Resuming is exact without pickling Optuna's internals: the state is the record of every ask
and tell in order, and loading it replays that record on a fresh study seeded alike, which
leaves the sampler where it was (Optuna's samplers are deterministic given their seed and the
same calls). It maximises the objective's score (its metric), like the other single-objective
strategies: costs in the objective are reported, not optimised (use nsga2 for a front). Needs
the optional extra: ``pip install -e ".[peers]"``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.conditions import failed
from nastk.space.continuous import Float
from nastk.space.dimensions import Categorical, Dimension, IntRange
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy

__all__ = ["OptunaStrategy"]


def _distribution(optuna: Any, d: Dimension) -> dict[str, Any] | None:
    """Optuna's distribution of dimension ``d`` as one parameter named after it
    (categorical, integer with its step or log scale, float with its log scale); ``None``
    for a dimension of several decisions (a stage list, a cell), which is one categorical
    parameter per decision, ``<name>.<i>``."""
    dist = optuna.distributions
    if isinstance(d, Categorical):
        return {d.name: dist.CategoricalDistribution(list(d.choices))}
    if isinstance(d, IntRange):
        if d.log and d.step != 1:  # Optuna's log-scale integers take no step
            return {d.name: dist.CategoricalDistribution(
                list(range(d.low, d.high + 1, d.step)))}
        return {d.name: dist.IntDistribution(d.low, d.high, log=d.log,
                                              step=1 if d.log else d.step)}
    if isinstance(d, Float):
        return {d.name: dist.FloatDistribution(d.low, d.high, log=d.log)}
    return None


def _suggest(trial: Any, d: Dimension) -> Any:
    """A value of ``d`` from an Optuna trial, define-by-run: the parameter
    :func:`_distribution` describes, asked through Optuna's public ``suggest_*``."""
    import optuna

    one = _distribution(optuna, d)
    if one is None:
        return d.from_decisions([trial.suggest_categorical(f"{d.name}.{i}", list(range(n)))
                                 for i, n in enumerate(d.decisions())])
    ((name, dist),) = one.items()
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def _parameters(space: SearchSpace, arch: Architecture) -> tuple[dict[str, Any],
                                                                  dict[str, Any]]:
    """The define-by-run parameters and distributions of ``arch`` (its active dimensions), for
    a result Optuna did not ask for."""
    import optuna

    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}
    for d in space.dimensions:
        if d.name not in arch:
            continue
        one = _distribution(optuna, d)
        if one is not None:
            params[d.name] = arch[d.name]
            dists.update(one)
            continue
        for i, (n, v) in enumerate(zip(d.decisions(), d.to_decisions(arch[d.name]),
                                       strict=True)):
            params[f"{d.name}.{i}"] = int(v)
            dists[f"{d.name}.{i}"] = optuna.distributions.CategoricalDistribution(
                list(range(n)))
    return params, dists


class OptunaOptions(BaseModel):
    """Options of :class:`OptunaStrategy`."""

    model_config = ConfigDict(extra="forbid")

    sampler: Literal["tpe", "tpe_multivariate", "gp"] = Field(
        "tpe", description="tpe (Optuna's default sampler), tpe_multivariate, or gp")
    n_startup_trials: int | None = Field(
        None, ge=1, description="random trials before the model is used (default: Optuna's)")
    max_invalid: int = Field(20, ge=1, description="resamples of a combination the space "
                                                   "rejects before drawing uniformly")


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("strategy 'optuna' needs the optional package optuna: "
                          "pip install -e \".[peers]\" (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaStrategy(Strategy):
    """Optuna's TPE or GP sampler over the space's decisions, asked and told like any
    strategy (see the module docstring)."""

    Options = OptunaOptions

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        self._optuna = _import_optuna()
        self._counts = space.decisions()
        #: conditional, continuous or log-scale dimensions: Optuna's define-by-run API, one
        #: parameter per active dimension of its own kind (see :func:`_suggest`)
        self._by_run = bool(getattr(space, "conditional", False)) or any(
            isinstance(d, Float) or getattr(d, "log", False) for d in space.dimensions)
        self._events: list[list[Any]] = []
        self._new_study()

    # -- the Optuna study ---------------------------------------------------------------------
    def _new_study(self) -> None:
        optuna = self._optuna
        o = self.options
        extra = {} if o.n_startup_trials is None else {"n_startup_trials": o.n_startup_trials}
        if o.sampler == "gp":
            sampler = optuna.samplers.GPSampler(seed=self.seed, **extra)
        else:
            sampler = optuna.samplers.TPESampler(seed=self.seed,
                                                 multivariate=o.sampler == "tpe_multivariate",
                                                 **extra)
        self._study = optuna.create_study(direction="maximize", sampler=sampler)
        self._dists = {f"d{i}": optuna.distributions.CategoricalDistribution(list(range(k)))
                       for i, k in enumerate(self._counts)}
        self._open: dict[str, list[Any]] = {}  # arch key -> its asked, untold Optuna trials
        self._worst: float | None = None  # the worst value told, the penalty of invalid draws

    def _propose(self) -> tuple[Any, Any]:
        """An Optuna trial and the architecture its parameters make (not yet validated)."""
        if self._by_run:
            trial = self._study.ask()
            values: dict[str, Any] = {}
            for d in self.space.dimensions:  # in order: a condition reads earlier values
                if failed(d.when, values) is None:
                    values[d.name] = _suggest(trial, d)
            return trial, values
        trial = self._study.ask(self._dists)
        decisions = [int(trial.params[f"d{i}"]) for i in range(len(self._counts))]
        return trial, self.space.from_decisions(decisions)

    def _draw(self) -> Architecture:
        for _ in range(self.options.max_invalid):
            trial, values = self._propose()
            try:
                arch = self.space.validate(values)
            except InvalidArchitectureError:
                if self._worst is None:
                    self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                else:
                    self._study.tell(trial, self._worst)
                continue
            self._open.setdefault(arch.key, []).append(trial)
            return arch
        return self.space.sample(self.rng)

    def _tell(self, arch: Architecture, value: float | None) -> None:
        optuna = self._optuna
        if value is not None:
            self._worst = value if self._worst is None else min(self._worst, value)
        trials = self._open.get(arch.key)
        if trials:
            trial = trials.pop(0)
            if value is None:
                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(trial, value)
            return
        # a result of an architecture not asked for (or asked and already told): add it as
        # a finished trial, so the sampler learns from it too
        if self._by_run:
            params, dists = _parameters(self.space, arch)
        else:
            params = {f"d{i}": int(v) for i, v in enumerate(self.space.to_decisions(arch))}
            dists = self._dists
        self._study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=value,
            state=(optuna.trial.TrialState.COMPLETE if value is not None
                   else optuna.trial.TrialState.FAIL)))

    # -- the strategy interface ---------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        out = [self._draw() for _ in range(n)]
        self._events.append(["ask", [a.key for a in out]])
        return out

    def tell(self, arch: Architecture, result: Result) -> None:
        arch = self.space.validate(arch)
        score = self.objective.score(result)
        value = None if score is None or not math.isfinite(score) else float(score)
        self._tell(arch, value)
        self._events.append(["tell", arch.as_dict(), value])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "events": [list(e) for e in self._events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay every recorded ask and tell on a fresh study seeded alike."""
        self.rng = np.random.default_rng(self.seed)
        self._new_study()
        self._events = []
        for event in state["events"]:
            if event[0] == "ask":
                got = [a.key for a in self.ask(len(event[1]))]
                if got != list(event[1]):
                    raise RuntimeError("strategy 'optuna': replaying the saved asks gave other "
                                       "architectures (a different optuna version or seed?); "
                                       "the run cannot resume exactly")
            else:
                arch = self.space.validate(event[1])
                self._tell(arch, event[2])
                self._events.append(["tell", arch.as_dict(), event[2]])
        super().load_state_dict(state)
