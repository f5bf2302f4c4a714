"""The Python API (``nastk.create_search``, ``SearchRun.optimize``, ``nastk.load_run``): the
README's example as written, in-process and on the Ray actor pool; evaluators and functions;
storages; resume after ``kill -9``; reading a run back without its plugins."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import toy_plugin
from conftest import wait_for_complete

import nastk
from nastk.core.errors import ConfigError, RegistryError, StoreError
from nastk.run.memory_store import MemoryStorage
from nastk.run.sqlite_store import RunStore

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- tested: tests/test_api.py -->"


def readme_example() -> str:
    """The README's Python example: the code block after the marker."""
    text = README.read_text()
    assert MARKER in text, "the README's Python example lost its marker"
    after = text.split(MARKER, 1)[1]
    block = re.search(r"```python\n(.*?)```", after, re.S)
    assert block is not None
    return block.group(1)


def run_script(code: str, cwd: Path, env: dict | None = None,
               timeout: float = 900) -> subprocess.CompletedProcess:
    path = cwd / "example.py"
    path.write_text(code)
    return subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def trial_rows(run_dir: Path) -> list[tuple[str, str, dict]]:
    with RunStore.open_existing(run_dir) as store:
        return [(t.arch.key, t.status.value, t.result.metrics if t.result else {})
                for t in store.trials()]


# -- the README's example -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_readme_example_is_short_and_runs_as_written(tmp_path):
    code = readme_example()
    lines = [ln for ln in code.splitlines() if ln.strip()]
    assert len(lines) < 15
    done = run_script(code, tmp_path)
    assert done.returncode == 0, done.stderr
    run = nastk.load_run(tmp_path / "runs" / "toy")
    assert len(run.finished) == 30 and run.objective.costs == ("params",)
    best = run.best
    assert best is not None and f"'accuracy': {best.result.metrics['accuracy']}" in done.stdout
    # the front is non-dominated, by brute force over every finished trial
    front = run.front()
    vec = {t.id: run.objective.vector(t.result) for t in run.finished}
    for t in front:
        assert not any(all(a >= b for a, b in zip(vec[o.id], vec[t.id], strict=True))
                       and vec[o.id] != vec[t.id] for o in run.finished)
    assert (tmp_path / "runs" / "toy" / "report.md").is_file()


@pytest.mark.slow
def test_the_readme_example_on_the_ray_actor_pool_gives_the_same_run(tmp_path):
    """With one actor and one candidate per call the pool proposes and records in the same
    order as the in-process loop: the two runs hold the same trials with the same metrics."""
    code = readme_example()
    assert code.count("nastk.create_search(") == 1
    here, pool = tmp_path / "here", tmp_path / "pool"
    here.mkdir()
    pool.mkdir()
    done = run_script(code, here)
    assert done.returncode == 0, done.stderr
    call = code[code.index("nastk.create_search("):]
    end = code.index("nastk.create_search(") + call.index(")\n")  # the call's closing paren
    on_ray = (code[:end] + ", executor={'kind': 'ray', 'mode': 'actors', 'actors': 1}"
              + code[end:])
    done = run_script(on_ray, pool)
    assert done.returncode == 0, done.stderr
    assert trial_rows(here / "runs" / "toy") == trial_rows(pool / "runs" / "toy")


# -- evaluators, objectives, strategies ----------------------------------------------------------
SPACE = toy_plugin.ToyGrid()


def test_a_plain_function_is_wrapped_and_other_things_are_refused_at_construction():
    search = nastk.create_search(SPACE, toy_plugin.objective, objective="score", budget=12,
                                 strategy="random")
    best = search.optimize()
    assert len(search.trials) == 12 and best is not None
    assert best.result.metrics["score"] == max(t.result.metrics["score"] for t in search.trials)
    with pytest.raises(TypeError, match=r"evaluator: got int 42; expected an evaluator \(an "
                                        r"object with evaluate\(arch, checkpoint=None\)"):
        nastk.create_search(SPACE, 42, objective="score")
    with pytest.raises(TypeError, match="cannot be called with one architecture"):
        nastk.create_search(SPACE, lambda arch, other: {}, objective="score")


def test_a_function_returning_metrics_and_costs_feeds_a_multi_objective_search():
    def fn(arch):
        return toy_plugin.objective(arch), {"params": float(sum(arch["s"]) + arch["a"])}

    search = nastk.create_search(SPACE, fn, objective="score", costs=["params"],
                                 strategy="nsga2", strategy_options={"population": 6},
                                 budget=18, seed=1)
    search.optimize()
    front = search.front()
    pts = {t.id: (t.result.metrics["score"], -t.result.costs["params"])
           for t in search.trials}
    assert front and all(not any(p[0] >= pts[t.id][0] and p[1] >= pts[t.id][1]
                                 and p != pts[t.id] for p in pts.values()) for t in front)


def test_objective_and_strategy_errors_say_what_was_expected():
    with pytest.raises(ConfigError, match="objective: name the metric to optimise"):
        nastk.create_search(SPACE, toy_plugin.objective)
    with pytest.raises(RegistryError, match=r"unknown strategy 'evo'; registered: .*evolution"):
        nastk.create_search(SPACE, toy_plugin.objective, objective="score", strategy="evo")
    with pytest.raises(ConfigError, match=r"strategy_options\.population"):
        nastk.create_search(SPACE, toy_plugin.objective, objective="score",
                            strategy_options={"population": 1})
    other = nastk.registry.instantiate(nastk.registry.STRATEGIES, "random", {},
                                       toy_plugin.ToyGrid(2), nastk.Objective(metric="score"))
    with pytest.raises(ConfigError, match="searches another space"):
        nastk.create_search(SPACE, toy_plugin.objective, objective="score", strategy=other)


def test_a_result_without_the_objective_metric_is_a_failed_trial_naming_it():
    search = nastk.create_search(SPACE, lambda a: {"acc": 1.0}, objective="score", budget=3,
                                 strategy="random")
    search.optimize()
    assert all(t.status is nastk.Status.FAILED for t in search.trials)
    assert "no 'score' (the objective's metric); it has metrics ['acc']" in \
        search.trials[0].result.error


# -- storage -------------------------------------------------------------------------------------
def test_an_in_memory_search_continues_in_the_same_storage_object():
    """Extending a run kept in a storage object gives the trials of one uninterrupted run."""
    whole = nastk.create_search(SPACE, toy_plugin.objective, objective="score", budget=20,
                                seed=4)
    whole.optimize()
    store = MemoryStorage()
    first = nastk.create_search(SPACE, toy_plugin.objective, objective="score", budget=20,
                                seed=4, storage=store)
    first.optimize(trials=9)
    assert len(first.trials) == 9
    again = nastk.create_search(SPACE, toy_plugin.objective, objective="score", budget=20,
                                seed=4, storage=store, resume=True)  # a fresh strategy
    again.optimize()
    assert [t.arch.key for t in again.trials] == [t.arch.key for t in whole.trials]


def test_a_run_folder_is_refused_without_resume_and_checked_against_its_identity(tmp_path):
    kwargs = dict(objective="score", budget=6, seed=0, storage=tmp_path / "run")
    with nastk.create_search(SPACE, toy_plugin.objective, **kwargs) as search:
        search.optimize()
        with pytest.raises(StoreError, match=r"is in use by"):
            nastk.create_search(SPACE, toy_plugin.objective, **kwargs, resume=True)
    with pytest.raises(StoreError, match=r"already holds a run\. Pass --resume"):
        nastk.create_search(SPACE, toy_plugin.objective, **kwargs)
    with pytest.raises(StoreError, match=r"differs .*in \['strategy'\]: strategy.seed: 0 -> 5"):
        nastk.create_search(SPACE, toy_plugin.objective, **{**kwargs, "seed": 5}, resume=True)
    with pytest.raises(StoreError, match=r"objective.direction: 'max' -> 'min'"):
        nastk.create_search(SPACE, toy_plugin.objective, **kwargs, direction="min",
                            resume=True)
    with nastk.create_search(SPACE, toy_plugin.objective, **kwargs, resume=True) as search:
        search.optimize(trials=10)  # a larger budget extends the run
        assert len(search.trials) == 10


KILLED = textwrap.dedent("""
    import sys
    import nastk, toy_plugin

    search = nastk.create_search(toy_plugin.ToyGrid(), toy_plugin.objective, objective="score",
                                 strategy="evolution", strategy_options={"population": 6},
                                 storage=sys.argv[1], budget=30, seed=3, resume=True)
    search.optimize()
    search.close()
""")


@pytest.mark.slow
def test_a_killed_python_search_resumes_exactly(tmp_path, toy_env):
    """The same script run again after ``kill -9`` continues its run folder: the final run
    holds the trials of an uninterrupted run, in the same order, none evaluated twice."""
    script = tmp_path / "search.py"
    script.write_text(KILLED)
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref")], env=toy_env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    env = dict(toy_env, NASTK_TOY_SLEEP="0.15")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_complete(tmp_path / "run" / "store.sqlite", 8, 120, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunStore.open_existing(tmp_path / "run") as st:
        assert 8 <= st.count(nastk.Status.COMPLETE) < 30
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=toy_env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    done = [r for r in trial_rows(tmp_path / "run") if r[1] == "complete"]
    assert done == trial_rows(tmp_path / "ref")


# -- reading a run back ----------------------------------------------------------------------------
PLUGIN = textwrap.dedent("""
    from nastk import SearchSpace, IntRange

    SPACE = SearchSpace([IntRange("x", 0, 40)], name="line")

    def score(arch):
        return {"score": -abs(arch["x"] - 17)}, {"params": float(arch["x"])}
""")


def test_load_run_reads_a_python_run_without_its_plugin(tmp_path, monkeypatch):
    """The evaluator's module is gone when the run is read: results, best, front, report and
    the exported architectures come from the store alone."""
    module = f"api_plugin_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = __import__(module)
    with nastk.create_search(plugin.SPACE, plugin.score, objective="score", costs=["params"],
                             strategy="random", storage=tmp_path / "run", budget=15) as s:
        s.optimize()
    (tmp_path / f"{module}.py").unlink()
    sys.modules.pop(module)
    run = nastk.load_run(tmp_path / "run")
    assert run.config is None and run.description["evaluator"] == "function"
    assert run.best.result.metrics["score"] == max(t.result.metrics["score"]
                                                   for t in run.finished)
    assert run.leaderboard(3)[0]["trial"] == run.best.id
    report = run.write_report(tmp_path / "rep")
    assert "nastk run: run" in report.read_text()
    files = run.export(tmp_path / "out", front=True)
    front = json.loads(files[-1].read_text())
    assert [p["trial"] for p in front["points"]] == [t.id for t in run.front()]
    assert json.loads(files[0].read_text())["space"] == {"name": "line", "options": {}}
