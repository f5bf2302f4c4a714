"""The search loop: ask -> de-duplicate -> evaluate -> store -> tell, resumable from the store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from nastk.errors import InvalidArchitectureError, StoreError
from nastk.evaluation.base import Evaluator, format_error
from nastk.evaluation.result import Result, Status
from nastk.objective import Objective
from nastk.space.search_space import SearchSpace
from nastk.store import RunStore
from nastk.strategies.base import Strategy
from nastk.trial import Trial


class Budget(BaseModel):
    """When a search stops."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(20, gt=0, description="distinct architectures to evaluate")
    time_s: float | None = Field(None, gt=0, description="wall-clock limit for this session")
    max_duplicate_streak: int = Field(
        1000, gt=0, description="stop after this many proposals in a row that were all "
                                "evaluated before (the strategy has converged or the space is "
                                "exhausted)")


#: called after every finished trial with (trial, number finished, best trial so far)
TrialCallback = Callable[[Trial, int, "Trial | None"], None]


class Search:
    """Drives one strategy over one space with one evaluator, recording into a :class:`RunStore`.

    Every finished trial is written before the strategy is told, and the strategy's state is
    saved with each tell, so :meth:`run` on a store left by a killed process continues exactly
    where it stopped; an architecture already finished is never evaluated again (a repeated
    proposal is answered from the store).
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Evaluator,
                 objective: Objective, store: RunStore, budget: Budget,
                 checkpoint_dir: Path | None = None, keep_checkpoints: int = 3,
                 on_trial: TrialCallback | None = None) -> None:
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.objective = objective
        self.store = store
        self.budget = budget
        self.checkpoint_dir = checkpoint_dir
        self.keep_checkpoints = keep_checkpoints
        self.on_trial = on_trial
        self.stop_reason: str = ""
        self.duplicates = 0

    # -- resume -------------------------------------------------------------------------------
    def restore(self) -> int:
        """Bring the strategy up to date with the store; returns the number of finished trials.

        ``running`` rows left by a dead process become ``interrupted`` (they will be proposed
        and evaluated again); results recorded but not yet told are told now.
        """
        self.store.mark_interrupted()
        state = self.store.load_strategy_state()
        if state is not None:
            self.strategy.load_state_dict(state)
        untold = self.store.untold()
        for trial in untold:
            assert trial.result is not None
            self.strategy.tell(trial.arch, trial.result)
        if untold:
            self.store.mark_told([t.id for t in untold], self.strategy.state_dict())
        return self.store.count(Status.COMPLETE, Status.FAILED)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> list[Trial]:
        """Search until the budget is spent; returns every trial of the run."""
        n_done = self.restore()
        best = self._best(self.store.finished())
        t0 = time.monotonic()
        streak = 0
        self.stop_reason = "budget of trials reached"
        while n_done < self.budget.trials:
            if self.budget.time_s is not None and time.monotonic() - t0 > self.budget.time_s:
                self.stop_reason = f"time budget of {self.budget.time_s:g} s reached"
                break
            arch = self.strategy.ask(1)[0]
            try:
                arch = self.space.validate(arch)
            except InvalidArchitectureError as err:
                raise InvalidArchitectureError(
                    f"strategy {type(self.strategy).__name__} proposed an invalid architecture: "
                    f"{err}") from None
            cached = self.store.lookup(arch)
            if cached is not None:
                assert cached.result is not None
                self.strategy.tell(arch, cached.result)
                self.store.save_strategy_state(self.strategy.state_dict())
                self.duplicates += 1
                streak += 1
                if streak >= self.budget.max_duplicate_streak:
                    self.stop_reason = (f"{streak} proposals in a row were already evaluated "
                                        "(space exhausted or strategy converged)")
                    break
                continue
            streak = 0
            trial_id = self.store.start_trial(arch)
            ckpt = (self.checkpoint_dir / f"trial_{trial_id}.pt"
                    if self.checkpoint_dir is not None else None)
            t_start = time.perf_counter()
            try:
                result = self.evaluator.evaluate(arch, checkpoint=ckpt)
            except Exception as err:  # evaluators should not raise; a plugin still might
                result = Result.failed(format_error(err),
                                       duration_s=time.perf_counter() - t_start)
            self.store.finish_trial(trial_id, result)
            self.strategy.tell(arch, result)
            self.store.mark_told([trial_id], self.strategy.state_dict())
            n_done += 1
            trial = Trial(trial_id, arch, result.status, result, 0.0, time.time())
            score = self.objective.score(result)
            if score is not None and (best is None or score > self.objective.score(best.result)):
                best = trial
            self._prune_checkpoints()
            if self.on_trial is not None:
                self.on_trial(trial, n_done, best)
        return self.store.trials()

    def _best(self, trials: list[Trial]) -> Trial | None:
        scored = [(self.objective.score(t.result), t) for t in trials if t.result is not None]
        scored = [(s, t) for s, t in scored if s is not None]
        return max(scored, key=lambda st: st[0])[1] if scored else None

    def _prune_checkpoints(self) -> None:
        """Keep the checkpoints of the ``keep_checkpoints`` best trials only."""
        if self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return
        files = {int(p.stem.split("_")[1]): p for p in self.checkpoint_dir.glob("trial_*.pt")}
        if len(files) <= self.keep_checkpoints:
            return
        scores = {t.id: self.objective.score(t.result) for t in self.store.finished()
                  if t.id in files and t.result is not None}
        ranked = sorted(files, key=lambda i: (scores.get(i) is not None,
                                              scores.get(i) or 0.0), reverse=True)
        for tid in ranked[self.keep_checkpoints:]:
            files[tid].unlink(missing_ok=True)


def check_fresh(store: RunStore) -> None:
    """Refuse to start a new search over a store that already holds trials."""
    n = store.count()
    if n:
        raise StoreError(f"run store {store.path} already holds {n} trials. Pass --resume to "
                         "continue that run, or choose another run_dir (--run-dir).")
