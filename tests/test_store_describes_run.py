"""Runs describe themselves in their store: the objective and the run's settings are recorded
when the run is created, the strategy's curves and the space's rendering of architectures when
it ends, so `nastk report`, `nastk compare` and export's choice of trial work from the store
alone, even after the run's plugins are gone."""

import importlib
import sqlite3
import sys
import textwrap
import uuid

import pytest
import yaml

from nastk.cli.commands.export import best_trial
from nastk.cli.main import main
from nastk.config.compose import build_space_and_task
from nastk.core.errors import NastkError
from nastk.core.registry import SEARCH_SPACES, STRATEGIES
from nastk.run.record import open_run
from nastk.run.sqlite_store import META_CURVES, META_OBJECTIVE, META_RENDERED, META_RUN, RunStore

PLUGIN = '''
from nastk import Architecture, IntRange, SearchSpace
from nastk.core.registry import SEARCH_SPACES, STRATEGIES
from nastk.strategies.base import Strategy


class RenderedLine(SearchSpace):
    """A one-dimensional space that renders its architectures in its own words."""

    def __init__(self, n: int = 30) -> None:
        super().__init__([IntRange("x", 0, n - 1)], name="rendered_line")

    def render(self, arch):
        return f"line point number {arch['x']}"


class Sweep(Strategy):
    """x = 0, 1, 2, ... with a learning curve (the score of each tell)."""

    def __init__(self, space, objective, seed=0):
        super().__init__(space, objective, seed)
        self.next = 0
        self.seen = []

    def ask(self, n=1):
        out = [Architecture(x=self.next + i) for i in range(n)]
        self.next += n
        return out

    def tell(self, arch, result):
        self.seen.append(float(result.metrics["score"]))

    def curves(self):
        return {"score per tell": list(self.seen)}

    def state_dict(self):
        return {**super().state_dict(), "next": self.next, "seen": list(self.seen)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.next, self.seen = state["next"], list(state["seen"])


def score(arch):
    return {"score": -abs(arch["x"] - 4), "flops": 10.0 + arch["x"]}


SEARCH_SPACES.register("{space}", RenderedLine)
STRATEGIES.register("{strategy}", Sweep)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin module written at test time (space, strategy, objective), importable while the
    test runs; ``plugin.remove()`` deletes its file, module and registrations."""
    name = f"vanishing_plugin_{uuid.uuid4().hex[:8]}"
    space, strategy = f"{name}_space", f"{name}_strategy"
    folder = tmp_path / "plugin"
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(PLUGIN).replace("{space}", space)
                    .replace("{strategy}", strategy))
    monkeypatch.syspath_prepend(str(folder))

    class Plugin:
        module, space_name, strategy_name = name, space, strategy

        @staticmethod
        def remove() -> None:
            path.unlink(missing_ok=True)
            sys.modules.pop(name, None)
            SEARCH_SPACES.unregister(space)
            STRATEGIES.unregister(strategy)
            importlib.invalidate_caches()

    yield Plugin
    Plugin.remove()


def _search(tmp_path, plugin, trials: int = 8):
    run_dir = tmp_path / "run"
    cfg = {"name": "vanishing", "run_dir": str(run_dir), "plugins": [plugin.module],
           "space": plugin.space_name, "strategy": plugin.strategy_name,
           "objective": {"metric": "score", "costs": ["flops"]},
           "evaluator": {"kind": "function", "function": f"{plugin.module}:score"},
           "budget": {"trials": trials}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 0
    return run_dir


def test_a_run_records_its_objective_and_settings(tmp_path, plugin):
    run_dir = _search(tmp_path, plugin)
    with RunStore.open_existing(run_dir) as store:
        assert store.get_meta(META_OBJECTIVE) == {"metric": "score", "direction": "max",
                                                  "costs": ["flops"],
                                                  "cut_short_on_front": False}
        run = store.get_meta(META_RUN)
        curves = store.get_meta(META_CURVES)
        rendered = store.get_meta(META_RENDERED)
    assert run["space"] == {"name": plugin.space_name, "options": {}}
    assert run["strategy"] == {"name": plugin.strategy_name, "options": {}}
    assert run["task"] is None and run["evaluator"] == "function" and run["seed"] == 0
    assert run["nastk_version"]
    assert curves == {"score per tell": [-4.0, -3.0, -2.0, -1.0, 0.0, -1.0, -2.0, -3.0]}
    assert len(rendered) == 8
    assert set(rendered.values()) == {f"line point number {x}" for x in range(8)}


def test_report_compare_and_export_choice_work_after_the_plugins_are_gone(tmp_path, plugin,
                                                                          capsys):
    run_dir = _search(tmp_path, plugin)
    report = run_dir / "report.md"
    written_by_search = report.read_text()
    assert "line point number 4" in written_by_search
    assert "## Strategy learning" in written_by_search

    plugin.remove()
    record = open_run(run_dir)  # reading the record needs none of them
    with pytest.raises(NastkError, match="cannot import"):  # they are really gone
        build_space_and_task(record.config)
    report.unlink()
    (run_dir / "strategy.png").unlink()
    capsys.readouterr()

    assert main(["report", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert report.read_text() == written_by_search  # the same report, from the store alone
    assert (run_dir / "strategy.png").is_file() and (run_dir / "best_so_far.png").is_file()
    assert "line point number 4" in captured.out  # the leaderboard renders from the store
    assert "come from the store" in captured.err

    assert main(["compare", str(run_dir), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.md").is_file()
    _, best = best_trial(run_dir)
    assert best.arch["x"] == 4


def test_a_store_written_before_runs_described_themselves_still_reports(tmp_path, plugin):
    run_dir = _search(tmp_path, plugin)
    with sqlite3.connect(run_dir / "store.sqlite") as db:  # as an older nastk left it
        db.execute("DELETE FROM meta WHERE key IN (?, ?, ?, ?)",
                   (META_OBJECTIVE, META_RUN, META_CURVES, META_RENDERED))
    (run_dir / "report.md").unlink()
    record = open_run(run_dir)  # the objective is rebuilt from the config
    assert (record.objective.metric, record.objective.direction) == ("score", "max")
    assert record.curves is None and record.rendered is None
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / "report.md").read_text()
    assert "line point number 4" in text and "## Strategy learning" in text

    plugin.remove()  # without the stored copies, a report needs the plugins
    assert main(["report", str(run_dir)]) == 2
