"""A scheduled run in its progress bar and report: the bar counts the resource spent and names
each rung in its lines; report.md gains a *Rungs* table (checked against counts taken from the
store's rung rows), ``learning_curves.png`` and a resource column; a run without a scheduler
is reported as before."""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nastk.core.objective import Objective
from nastk.evaluation.base import ResourceFunctionEvaluator
from nastk.report.markdown import write_report
from nastk.report.plots import geometric
from nastk.report.progress import ProgressView, SearchProgress
from nastk.report.results import leaderboard, leaderboard_table, rung_table
from nastk.run import layout
from nastk.run.lifecycle import SearchSetup, execute
from nastk.run.loop import Budget, Search
from nastk.run.record import open_run
from nastk.run.sqlite_store import META_OBJECTIVE, RunStore
from nastk.scheduling.config import SchedulerConfig, build_scheduler
from nastk.scheduling.fidelity import Fidelity
from nastk.space.dimensions import Categorical, IntRange
from nastk.space.search_space import SearchSpace
from nastk.strategies.random_search import RandomSearch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = SearchSpace([IntRange("a", 0, 30), Categorical("b", ["x", "y", "z"])])
OBJ = Objective(metric="score")


def score(arch: Any, r: float) -> dict[str, float]:
    return {"score": arch["a"] * (1 - 1 / (r + 1)) + {"x": 0, "y": 3, "z": 5}[arch["b"]]}


def failing_score(arch: Any, r: float) -> dict[str, float]:
    if arch["a"] % 7 == 0:
        raise ValueError("boom")
    return score(arch, r)


def log_console() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


def scheduled_run(run_dir: Path, kind: str = "sh", fn: Any = score, trials: int = 40,
                  resource: float | None = 400, **extra: Any
                  ) -> tuple[Console, Search]:
    """A scheduled search into a run folder's store, its progress in a log console."""
    ev = ResourceFunctionEvaluator(fn, Fidelity("epochs", 27))
    sched = build_scheduler(SchedulerConfig(kind=kind, **extra), ev.fidelity, OBJ)
    console = log_console()
    store = RunStore(layout.RunLayout(run_dir).store)
    store.set_meta(META_OBJECTIVE, OBJ.model_dump(mode="json"))
    try:
        with ProgressView(console, interval_s=1e9, percent=0) as view:
            shown = SearchProgress(view, "search t", OBJ)
            search = Search(SPACE, RandomSearch(SPACE, OBJ, seed=0), ev, OBJ, store,
                            Budget(trials=trials, resource=resource), scheduler=sched,
                            on_trial=shown.trial, on_rung=shown.rung)
            shown.start(search)
            search.run()
    finally:
        store.close()
    return console, search


def independent_counts(run_dir: Path) -> dict[int, dict[str, float]]:
    """Per rung, counted straight from the store's rung rows and trials."""
    with RunStore.open_existing(run_dir) as store:
        rungs = store.rungs()
        trials = store.trials()
    ids: dict[int, set[int]] = defaultdict(set)
    spent: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    for r in rungs:
        ids[r.rung].add(r.trial_id)
        spent[r.rung] += r.cost
        failed[r.rung] += r.result.status.value == "failed"
    stopped: Counter[int] = Counter()
    for t in trials:
        if t.result is not None and t.result.info.get("scheduler") == "stopped":
            stopped[int(t.result.info["rung"])] += 1
    last = max(ids)
    return {k: {"reached": len(ids[k]),
                "promoted": len(ids[k] & ids.get(k + 1, set())) if k < last else None,
                "stopped": stopped[k], "failed": failed[k], "spent": spent[k]}
            for k in ids}


def rungs_table(text: str) -> list[list[str]]:
    section = text.split("## Rungs", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


@pytest.mark.parametrize("kind,extra", [("sh", {}), ("asha", {}), ("hyperband", {}),
                                        ("hyperband", {"brackets": "async"})])
def test_rung_table_matches_the_store(tmp_path: Path, kind: str, extra: dict[str, Any]):
    run_dir = tmp_path / "run"
    scheduled_run(run_dir, kind, **extra)
    record = open_run(run_dir)
    assert record.rungs, "open_run reads the rung rows"
    path = record.write_report()
    text = path.read_text()
    expected = independent_counts(run_dir)
    table = rungs_table(text)
    assert [int(row[0]) for row in table] == sorted(expected)
    for row in table:
        k = int(row[0])
        want = expected[k]
        assert int(row[2]) == want["reached"]
        assert row[3] == ("-" if want["promoted"] is None else str(want["promoted"]))
        assert int(row[4]) == want["stopped"]
        assert int(row[5]) == want["failed"]
        assert float(row[8]) == pytest.approx(want["spent"])
    # every candidate that reached a rung below the last was promoted, stopped, failed or left
    for r in rung_table(record.rungs, record.trials, record.objective):
        if r.promoted is not None:
            assert r.promoted + r.stopped + r.failed + r.unfinished == r.reached
    assert sum(want["spent"] for want in expected.values()) <= 400
    png = run_dir / layout.LEARNING_CURVES_PNG
    assert png == layout.RunLayout(run_dir).learning_curves_png
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000
    assert "![learning curves](learning_curves.png)" in text
    # the leaderboard names each trial's resource
    header = next(line for line in text.split("## Leaderboard", 1)[1].splitlines()
                  if line.startswith("| #"))
    assert "| resource |" in header
    rows = leaderboard(record.trials, record.objective, top=100)
    assert all(row["resource"] in (1.0, 3.0, 9.0, 27.0) for row in rows)
    assert any(row["resource"] < 27 for row in rows)


def test_rung_table_counts_failures(tmp_path: Path):
    run_dir = tmp_path / "run"
    scheduled_run(run_dir, "asha", fn=failing_score)
    record = open_run(run_dir)
    expected = independent_counts(run_dir)
    assert sum(v["failed"] for v in expected.values()) > 0
    got = {r.rung: r for r in rung_table(record.rungs, record.trials, record.objective)}
    for k, want in expected.items():
        assert (got[k].reached, got[k].stopped, got[k].failed) == (
            want["reached"], want["stopped"], want["failed"])
        assert got[k].promoted == want["promoted"]


def test_progress_counts_the_resource_and_names_rungs(tmp_path: Path):
    console, search = scheduled_run(tmp_path / "run", "asha")
    out = console.file.getvalue()
    lines = [line for line in out.splitlines() if line.strip()]
    final = [line for line in lines if line.startswith("search t:")]
    assert final, out
    spent = f"{search.spent:g}"
    assert re.match(rf"search t: {spent}/400 epochs \(\d+%\), .* elapsed, ETA", final[-1])
    assert f"{search.n_done}/40 trials" in final[-1]
    assert "best score=" in final[-1]
    # a rung promoted, a rung stopped, a candidate completed: each named on its line
    assert re.search(r"^trial \d+ rung 0 -> 1 epochs: score=[\d.]+, promoted to rung 1 "
                     r"\(3 epochs\)$", out, re.M)
    assert re.search(r"^trial \d+ stopped at rung \d \(\d+ epochs\): score=", out, re.M)
    assert re.search(r"^trial \d+ completed at rung 3 \(27 epochs\): score=", out, re.M)
    assert "\x1b[" not in out


def test_progress_of_synchronous_rungs_names_later_promotions(tmp_path: Path):
    console, _ = scheduled_run(tmp_path / "run", "sh")
    out = console.file.getvalue()
    assert "waits for the rung's decision" in out
    assert re.search(r"^trial \d+ promoted from rung 0 to rung 1 \(3 epochs\)$", out, re.M)


def test_progress_without_resource_budget_counts_trials(tmp_path: Path):
    console, search = scheduled_run(tmp_path / "run", "asha", trials=12, resource=None)
    final = [line for line in console.file.getvalue().splitlines()
             if line.startswith("search t:")]
    assert final[-1].startswith(f"search t: {search.n_done}/12 trials")


def test_run_without_scheduler_reports_as_before(tmp_path: Path):
    """No scheduler: the bar counts trials, no rung line, no Rungs section, no resource
    column, no learning-curves plot (a stale one is removed)."""
    from nastk.evaluation.base import FunctionEvaluator

    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    stale = run_dir / layout.LEARNING_CURVES_PNG
    stale.write_bytes(PNG_MAGIC)
    store = RunStore(layout.RunLayout(run_dir).store)
    store.set_meta(META_OBJECTIVE, OBJ.model_dump(mode="json"))
    console = log_console()
    with ProgressView(console, interval_s=1e9, percent=0) as view:
        shown = SearchProgress(view, "search t", OBJ)
        search = Search(SPACE, RandomSearch(SPACE, OBJ, seed=0),
                        FunctionEvaluator(lambda a: score(a, 27)), OBJ, store,
                        Budget(trials=8), on_trial=shown.trial, on_rung=shown.rung)
        shown.start(search)
        trials = search.run()
    store.close()
    out = console.file.getvalue()
    assert out.splitlines()[-1].startswith("search t: 8/8 trials (100%)")
    assert "rung" not in out
    record = open_run(run_dir)
    assert record.rungs == []
    text = record.write_report().read_text()
    assert "## Rungs" not in text and "resource" not in text
    assert not stale.exists()
    # the same report as one written without the rungs argument at all
    plain = write_report(tmp_path / "plain", trials, OBJ, title=f"nastk run: {record.name}",
                         meta=record.report_meta(), curves=record.curves, render=record.render)
    assert plain.read_text() == text
    table = leaderboard_table(trials, OBJ)
    assert "resource" not in [c.header for c in table.columns]


def test_geometric_rungs():
    assert geometric([1, 3, 9, 27]) and geometric([3, 9])
    assert not geometric([1, 2, 3, 4]) and not geometric([5]) and not geometric([1, 3, 10, 50])


@pytest.mark.skipif("scheduler" not in {f.name for f in dataclasses.fields(SearchSetup)},
                    reason="SearchSetup has no scheduler yet")
def test_lifecycle_wires_progress_and_report(tmp_path: Path):
    ev = ResourceFunctionEvaluator(score, Fidelity("epochs", 27))
    sched = build_scheduler(SchedulerConfig(kind="asha"), ev.fidelity, OBJ)

    class Fixed:
        def identity(self) -> dict[str, Any]:
            return {"test": 1}

    setup = SearchSetup(name="t", space=SPACE, strategy=RandomSearch(SPACE, OBJ, seed=0),
                        evaluator=ev, objective=OBJ, budget=Budget(trials=20, resource=150),
                        identity=Fixed(), description={"space": "test"},
                        scheduler=sched)  # type: ignore[call-arg]
    console = log_console()
    outcome = execute(setup, tmp_path / "run", console=console)
    out = console.file.getvalue()
    assert re.search(r"^search t: [\d.]+/150 epochs", out, re.M), out
    assert re.search(r"^trial \d+ rung 0 -> 1 epochs: score=", out, re.M)
    assert outcome.report is not None
    text = outcome.report.read_text()
    assert "## Rungs" in text
    assert (tmp_path / "run" / layout.LEARNING_CURVES_PNG).is_file()
