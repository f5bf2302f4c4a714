"""The CLI end to end: list, a plugin registered at run time, report, export."""

import argparse
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

import nastk.cli.commands
from nastk import Architecture, IntRange, Objective, Result, SearchSpace
from nastk.cli.main import handler, main
from nastk.cli.parser import build_parser
from nastk.core.registry import SEARCH_SPACES, STRATEGIES
from nastk.run.sqlite_store import RunStore
from nastk.strategies.base import Strategy


class LineSpace(SearchSpace):
    """A one-dimensional space defined inside a test module."""

    def __init__(self, n: int = 50) -> None:
        super().__init__([IntRange("x", 0, n - 1)], name="line")


class SweepStrategy(Strategy):
    """Proposes x = 0, 1, 2, ... in order (a strategy defined inside a test module)."""

    def __init__(self, space, objective: Objective, seed: int = 0) -> None:
        super().__init__(space, objective, seed)
        self.next = 0

    def ask(self, n=1):
        out = [Architecture(x=self.next + i) for i in range(n)]
        self.next += n
        return out

    def tell(self, arch, result: Result) -> None:
        pass

    def state_dict(self):
        return {**super().state_dict(), "next": self.next}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.next = state["next"]


def line_objective(arch):
    return {"score": -abs(arch["x"] - 17)}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict:
    """Every runnable command of ``parser`` (``("supernet", "train")``) -> its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    found = {}
    for name, sub in subs[0].choices.items():
        found.update(_commands(sub, (*path, name)))
    return found


def test_every_command_runs_through_its_own_module():
    commands = _commands(build_parser())
    assert sorted(" ".join(c) for c in commands) == [
        "compare", "dashboard", "distill", "export", "latency check", "latency profile", "list",
        "path-filter fit", "recipe", "report", "search", "study", "supernet train"]
    modules = {c: p.get_default("handler") for c, p in commands.items()}
    assert len(set(modules.values())) == len(commands)  # one module a command
    folder = Path(nastk.cli.commands.__file__).parent
    on_disk = {f.stem for f in folder.glob("*.py") if f.stem != "__init__"}
    assert set(modules.values()) == on_disk
    for module in modules.values():
        run = handler(module)
        assert run.__module__ == f"nastk.cli.commands.{module}"
        assert list(inspect.signature(run).parameters) == ["args", "console"]


@pytest.fixture
def runtime_plugins():
    SEARCH_SPACES.register("line_test", LineSpace)
    STRATEGIES.register("sweep_test", SweepStrategy)
    yield
    SEARCH_SPACES.unregister("line_test")
    STRATEGIES.unregister("sweep_test")


def test_list_shows_every_registered_plugin(runtime_plugins, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside table cells
    assert main(["list", "--plugins", "toy_plugin"]) == 0
    out = capsys.readouterr().out
    for name in ["random", "evolution", "nsga2", "rl", "small_cnn", "classification",
                 "toy_grid", "line_test", "sweep_test"]:
        assert name in out
    assert "A one-dimensional space defined inside a test module" in out
    assert "registered at run time" in out and "entry point" in out


@pytest.mark.parametrize("kind", ["spaces", "search_spaces", "search spaces"])
def test_list_a_kind_shows_options_with_defaults(kind, runtime_plugins, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    assert "small_cnn" in out and "line_test" in out
    assert "random" not in out.split()  # strategies are not listed
    small = out.split("small_cnn", 1)[1]
    # an Options field: name, type, default, description
    assert re.search(r"stem_width\s.*int\s.*16\s.*channels of the stem convolution", small)
    # a plugin without Options: its signature's keyword defaults
    assert re.search(r"\bn\s.*int\s.*50", out.split("line_test", 1)[1])


def test_list_strategies_and_a_bad_kind(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"population\s.*int\s.*20", out)
    assert "small_cnn" not in out
    with pytest.raises(SystemExit):
        main(["list", "models"])
    assert "choose one of search spaces, tasks, strategies, predictors" in capsys.readouterr().err


def test_runtime_plugin_is_usable_by_search(runtime_plugins, tmp_path, capsys):
    cfg = {"name": "line", "run_dir": str(tmp_path / "run"), "space": "line_test",
           "strategy": "sweep_test", "objective": {"metric": "score"},
           "evaluator": {"kind": "function", "function": "test_cli:line_objective"},
           "budget": {"trials": 25}}
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "leaderboard: line" in out
    with RunStore.open_existing(tmp_path / "run") as st:
        trials = st.finished()
    assert [t.arch["x"] for t in trials] == list(range(25))
    best = max(trials, key=lambda t: t.result.metrics["score"])
    assert best.arch["x"] == 17
    report = (tmp_path / "run" / "report.md").read_text()
    assert best.arch.short_id in report.split("Pareto")[0]
    assert (tmp_path / "run" / "best_so_far.png").stat().st_size > 1000

    # report can be rebuilt; export of a function-scored run gives the architecture only
    assert main(["report", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run")]) == 0
    exported = json.loads((tmp_path / "run" / "export" / "arch.json").read_text())
    assert exported["arch"] == {"x": 17} and exported["metrics"]["score"] == 0
    assert "no model to export" in capsys.readouterr().out


def test_report_and_export_name_a_missing_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no run store" in capsys.readouterr().err


def test_compare_groups_runs_by_strategy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    runs = []
    for strategy in ("random", "evolution"):
        for seed in (0, 1):
            run = tmp_path / f"{strategy}{seed}"
            cfg = {"name": f"{strategy}{seed}", "run_dir": str(run), "seed": seed,
                   "plugins": ["toy_plugin"], "space": "toy_grid",
                   "strategy": {"name": strategy}, "objective": {"metric": "score"},
                   "evaluator": {"kind": "function", "function": "toy_plugin:objective"},
                   "budget": {"trials": 15}}
            path = tmp_path / f"{strategy}{seed}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            assert main(["search", str(path), "--no-progress"]) == 0
            runs.append(str(run))
    capsys.readouterr()
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "random" in out and "evolution" in out
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| random | 2 |" in md and "| evolution | 2 |" in md
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"

    from nastk.cli.commands.compare import compare_runs

    _, groups = compare_runs([tmp_path / "random0", tmp_path / "random1"])
    with RunStore.open_existing(tmp_path / "random0") as st:
        best0 = max(t.result.metrics["score"] for t in st.finished())
    assert groups["random"].final[0] == pytest.approx(best0)


def test_list_gives_each_plugins_whole_first_paragraph(capsys, monkeypatch):
    """A docstring's first paragraph wraps over lines; `nastk list` shows all of it (the
    optuna strategy's used to stop at 'asked and told like any')."""
    from nastk.strategies.optuna_peer import OptunaStrategy

    first = OptunaStrategy.__doc__.strip().split("\n\n")[0]
    whole = " ".join(line.strip() for line in first.splitlines())
    assert whole.count(" ") > len(first.splitlines()[0].split())  # it does wrap
    assert main(["list", "strategies"]) == 0
    described: dict[str, list[str]] = {}  # name -> its "what it is" cell, line by line
    name = None
    for line in capsys.readouterr().out.split("options")[0].splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3:
            name = cells[0] or name
            described.setdefault(name, []).append(cells[1])
    assert " ".join(described["optuna"]) == whole
