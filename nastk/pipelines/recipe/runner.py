"""Running a loaded recipe: :func:`run_recipe_stages` runs the stages in order and records each
in the recipe's state (:mod:`nastk.pipelines.recipe.state`).

A stage recorded ``done`` with the same hash is skipped; a stage that started but did not
finish is run again, resuming (the runner decides how: a supernet training from its checkpoint,
a search from its store). A ``done`` stage whose resolved config changed is refused: ``--redo
STAGE`` runs it and every later stage again, after moving their folders aside to
``run_dir/<stage>.old-<n>`` (nothing is deleted). ``run_dir/recipe.yaml`` is the recipe text
last run and ``run_dir/resolved.yaml`` every stage's config as resolved so far.

What each kind of stage runs is given by the caller (:class:`StageRunner`, see
:mod:`nastk.cli.commands.recipe`), so the engine imports no command.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from nastk.core.errors import ConfigError, NastkError, StoreError
from nastk.core.weights import write_atomic
from nastk.pipelines.recipe.plan import Plan, ResolvedStage
from nastk.pipelines.recipe.schema import OUTPUTS
from nastk.pipelines.recipe.state import RecipeState, json_safe
from nastk.run import layout
from nastk.run.identity import changes, describe_changes
from nastk.run.lock import lock_run_dir
from nastk.run.signals import Interrupted


@dataclass
class StageRunner:
    """What a kind of stage runs: ``run(stage, console, progress)`` runs it (resuming what an
    earlier, cut-off session of the same stage left in its folder) and returns its outputs (the
    keys of :data:`OUTPUTS`); ``check(stage)`` validates a stage further before anything runs
    (e.g. its plugins' options); ``summary(outputs)`` is the text of the summary table's
    outputs column."""

    run: Callable[[ResolvedStage, Console, bool], dict[str, Any]]
    check: Callable[[ResolvedStage], None] | None = None
    summary: Callable[[dict[str, Any]], str] | None = None


@dataclass
class StageReport:
    """One row of the recipe's summary."""

    name: str
    kind: str
    status: str  # "ran", "skipped" (done before), "not run"
    wall_s: float | None = None
    outputs: dict[str, Any] | None = None
    text: str = ""


@dataclass
class RecipeOutcome:
    """What :func:`run_recipe_stages` did."""

    run_dir: Path
    state: Path
    stages: list[StageReport] = field(default_factory=list)


class RecipeInterrupted(Interrupted):
    """Ctrl-C, SIGTERM or SIGHUP during a stage; ``stage`` names it (finished stages are
    recorded)."""

    def __init__(self, stage: str, run_dir: Path, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.stage = stage
        self.run_dir = run_dir


def _with_hint(err: NastkError, hint: str) -> NastkError:
    """``err`` again, of its own type, with ``hint`` on a line of its own."""
    try:
        return type(err)(f"{err}\n{hint}")
    except Exception:  # a subclass with another constructor: keep its text
        return NastkError(f"{err}\n{hint}")


def _moved_aside(folder: Path) -> Path:
    n = 1
    while folder.with_name(f"{folder.name}.old-{n}").exists():
        n += 1
    target = folder.with_name(f"{folder.name}.old-{n}")
    folder.rename(target)
    return target


def _check_recorded_outputs(plan: Plan, index: int, outputs: dict[str, Any]) -> None:
    spec = plan.recipe.stages[index]
    for key, kind in OUTPUTS[spec.kind].items():
        value = outputs.get(key)
        if kind == "path" and (value is None or not Path(value).exists()):
            raise StoreError(f"stage {spec.name!r} is recorded done, but its {key} {value} is "
                             f"missing; run it again with `--redo {spec.name}`")


def _write_resolved(plan: Plan, resolved: dict[str, dict[str, Any]]) -> None:
    stages = []
    for i, spec in enumerate(plan.recipe.stages):
        data = resolved.get(spec.name) or {"kind": spec.kind, **plan.raw[i]}
        stages.append({"name": spec.name, **data})
    doc = {"name": plan.recipe.name, "run_dir": str(plan.run_dir), "seed": plan.recipe.seed,
           "stages": stages}
    text = ("# every stage as resolved (references of stages not run yet are left in place)\n"
            + yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False))
    write_atomic(plan.run_dir / layout.RESOLVED_YAML, text.encode())


def run_recipe_stages(plan: Plan, runners: Mapping[str, StageRunner], *,
                      redo: str | None = None, until: str | None = None,
                      only: str | None = None, console: Console | None = None,
                      progress: bool = True) -> RecipeOutcome:
    """Run a loaded recipe's stages in order, skipping those recorded done with the same
    resolved config, resuming the one that was cut off, and recording each in
    ``run_dir/recipe.json``. ``redo``: run that stage and every later one again (their folders
    moved aside to ``<stage>.old-<n>``); ``until``: stop after that stage; ``only``: run just
    that stage (the stages before it must be done). Holds the lock of the recipe's run_dir."""
    console = console or Console(stderr=True)
    recipe = plan.recipe
    names = [s.name for s in recipe.stages]
    n = len(names)
    last = n - 1
    first_run = 0
    if until is not None:
        last = recipe.index(until, "--until")
    if only is not None:
        first_run = last = recipe.index(only, "--only")
        if until is not None:
            raise ConfigError("--only and --until do not go together: --only runs one stage")
    redo_from = recipe.index(redo, "--redo") if redo is not None else None
    run_dir = plan.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"recipe run_dir {run_dir} is a file, not a folder")
    lock = lock_run_dir(run_dir, create=True)  # one live process per recipe
    try:
        state = RecipeState.load(run_dir)
        write_atomic(run_dir / layout.RECIPE_COPY, plan.text.encode())
        if redo_from is not None:
            for i in range(redo_from, n):
                folder = plan.stage_dir(i)
                if folder.exists():
                    moved = _moved_aside(folder)
                    console.print(f"--redo {redo}: moved {folder} aside to {moved}",
                                  highlight=False)
                if state.entry(names[i]) is not None:
                    state.forget(names[i])
        outcome = RecipeOutcome(run_dir, state.path)
        outputs: dict[str, dict[str, Any]] = {"recipe": plan.recipe_outputs()}
        resolved: dict[str, dict[str, Any]] = {}
        for i, spec in enumerate(recipe.stages):
            header = f"[{i + 1}/{n}] {spec.name} ({spec.kind})"
            if i > last:
                outcome.stages.append(StageReport(spec.name, spec.kind, "not run"))
                continue
            stage = plan.resolve(i, outputs)
            resolved[spec.name] = stage.data
            entry = state.entry(spec.name)
            runner = runners[spec.kind]
            if entry is not None and entry.get("status") == "done":
                if entry.get("hash") != stage.digest:
                    shown = describe_changes(changes(entry.get("resolved") or {}, stage.data),
                                             most=4)
                    raise ConfigError(
                        f"stage {spec.name!r} is done, but its resolved config changed since it "
                        f"ran ({shown or 'see ' + str(state.path)}). To run it again with the "
                        f"new config, pass `--redo {spec.name}` (moves {plan.stage_dir(i)} and "
                        "the folders of the stages after it aside, to <stage>.old-<n>), or "
                        f"delete {plan.stage_dir(i)} and its entry in {state.path}")
                _check_recorded_outputs(plan, i, entry["outputs"])
                outputs[spec.name] = entry["outputs"]
                console.print(f"[{i + 1}/{n}] stage {spec.name}: done (skipped)", highlight=False)
                text = runner.summary(entry["outputs"]) if runner.summary else ""
                outcome.stages.append(StageReport(spec.name, spec.kind, "skipped",
                                                  entry.get("wall_s"), entry["outputs"], text))
                continue
            if i < first_run:
                raise ConfigError(f"--only {only}: stage {spec.name!r} before it has not "
                                  f"finished; run the recipe with `--until {spec.name}` first")
            continuing = entry is not None or stage.dir.exists()
            again = " (continuing an earlier session)" if continuing else ""
            console.print(f"[bold]{header}[/bold] -> {stage.dir}{again}", highlight=False)
            state.start(stage)
            _write_resolved(plan, resolved)
            t0 = time.perf_counter()
            try:
                outs = runner.run(stage, console, progress)
            except KeyboardInterrupt as err:
                state.stop(spec.name, time.perf_counter() - t0, error="interrupted")
                signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
                raise RecipeInterrupted(spec.name, run_dir, signum) from None
            except BaseException as err:
                state.stop(spec.name, time.perf_counter() - t0,
                           error=f"{type(err).__name__}: {err}")
                if continuing and isinstance(err, NastkError):
                    raise _with_hint(err, f"(stage {spec.name!r} was continuing what an "
                                          f"earlier session left in {stage.dir}; to start it "
                                          f"afresh, pass `--redo {spec.name}`)") from err
                raise
            wall = time.perf_counter() - t0
            outs = json_safe(outs)
            missing = [k for k in OUTPUTS[spec.kind] if k not in outs]
            if missing:
                raise StoreError(f"stage {spec.name!r}: its runner gave no {missing}")
            state.stop(spec.name, wall, outputs=outs)
            outputs[spec.name] = outs
            text = runner.summary(outs) if runner.summary else ""
            outcome.stages.append(StageReport(spec.name, spec.kind, "ran",
                                              state.stages[spec.name]["wall_s"], outs, text))
        _write_resolved(plan, resolved)
        return outcome
    finally:
        lock.release()
