"""`nastk compare`: curves of runs of different lengths, seeds counted once, wording by the
grouping, the default output folder beside the runs, the sample std."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nastk.cli.commands.compare import (
    GroupSummary,
    compare_runs,
    default_out_dir,
    seed_notes,
    summary_table,
    write_comparison,
)
from nastk.config.schema import parse_config
from nastk.core.objective import Objective
from nastk.pipelines.search import run_search_config as run_experiment
from nastk.report.plots import compare_figure

ACC = Objective(metric="accuracy", direction="max")


def make_run(run_dir: Path, *, name: str, seed: int, trials: int, strategy: str = "random"):
    cfg = {"name": name, "run_dir": str(run_dir), "seed": seed, "plugins": ["toy_plugin"],
           "space": "toy_grid", "strategy": {"name": strategy},
           "objective": {"metric": "score"},
           "evaluator": {"kind": "function", "function": "toy_plugin:objective"},
           "budget": {"trials": trials}}
    run_experiment(parse_config(cfg, "exp.yaml"), progress=False)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "a": make_run(root / "sweep" / "a", name="a", seed=0, trials=12),
        "b": make_run(root / "sweep" / "b", name="b", seed=0, trials=6),  # repeats seed 0
        "c": make_run(root / "other" / "c", name="c", seed=1, trials=6),
    }


# --- curves of runs of different lengths ----------------------------------------------------

def _lines(fig, gid: str):
    return [line for line in fig.axes[0].get_lines() if line.get_gid() == gid]


def test_mean_curve_stops_where_the_shortest_run_ends():
    long_low = [(i, 0.1 + 0.02 * i) for i in range(1, 11)]  # 10 evaluations, up to 0.3
    short_high = [(i, 0.5) for i in range(1, 6)]  # 5 evaluations at 0.5
    fig = compare_figure({"random": [long_low, short_high]}, ACC)
    (mean,) = _lines(fig, "random:mean")
    x, y = mean.get_xdata(), mean.get_ydata()
    assert max(x) == 5  # only as far as both runs go
    assert np.all(np.diff(y[~np.isnan(y)]) >= 0)  # a best-so-far mean never goes down
    (after,) = _lines(fig, "random:fewer runs")
    assert after.get_linestyle() == ":"
    assert min(after.get_xdata()) == 5 and max(after.get_xdata()) == 10
    (ends,) = _lines(fig, "random:run ends")
    assert list(ends.get_xdata()) == [5]  # the short run drops out here


def test_runs_of_one_length_have_no_continuation():
    curves = {"evolution": [[(1, 0.2), (2, 0.4)], [(1, 0.3), (2, 0.3)]]}
    fig = compare_figure(curves, ACC)
    assert max(_lines(fig, "evolution:mean")[0].get_xdata()) == 2
    assert not _lines(fig, "evolution:fewer runs") and not _lines(fig, "evolution:run ends")


def test_band_is_the_sample_std():
    curves = {"g": [[(1, 0.2)], [(1, 0.4)], [(1, 0.9)]]}
    fig = compare_figure(curves, ACC)
    band = fig.axes[0].collections[0]
    ys = band.get_paths()[0].vertices[:, 1]
    mean, std = np.mean([0.2, 0.4, 0.9]), np.std([0.2, 0.4, 0.9], ddof=1)
    assert ys.max() == pytest.approx(mean + std) and ys.min() == pytest.approx(mean - std)


def test_legend_counts_distinct_seeds_and_title_words_the_grouping():
    curves = {"x": [[(1, 0.2)], [(1, 0.4)]], "y": [[(1, 0.3)], [(1, 0.5)]]}
    fig = compare_figure(curves, ACC, group_by="name", seeds={"x": [0, 0], "y": [0, 1]})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "x (2 runs, 1 seed)" in labels and "y (2 seeds)" in labels
    title = fig.axes[0].get_title()
    assert "run name" in title and "strateg" not in title
    by_strategy = compare_figure(curves, ACC).axes[0].get_title()
    assert "strategy" in by_strategy


# --- summaries ------------------------------------------------------------------------------

def test_group_std_is_the_sample_std_with_n():
    g = GroupSummary("g", [Path("a"), Path("b"), Path("c")], [], [0.2, 0.4, 0.9], [0, 1, 2])
    assert g.n == 3
    assert g.std == pytest.approx(float(np.std([0.2, 0.4, 0.9], ddof=1)))
    one = GroupSummary("one", [Path("a")], [], [0.5], [0])
    assert one.n == 1 and math.isnan(one.std)


def test_distinct_seeds_are_read_from_the_runs(runs):
    _, groups = compare_runs([runs["a"], runs["b"], runs["c"]])
    g = groups["random"]
    assert g.seeds == [0, 0, 1]
    assert g.distinct_seeds == [0, 1]
    assert g.repeated_seeds == {0: [runs["a"], runs["b"]]}
    notes = seed_notes(groups)
    assert len(notes) == 1 and "seed 0" in notes[0] and "a" in notes[0] and "b" in notes[0]


def test_comparison_files_word_the_grouping_and_report_seeds_and_n(runs, tmp_path):
    objective, groups = compare_runs([runs["a"], runs["b"], runs["c"]], by="name")
    path = write_comparison(tmp_path / "cmp", objective, groups, by="name")
    md = path.read_text()
    assert "grouped by run name" in md and "strateg" not in md.split("\n\n", 1)[0]
    assert "| run name | runs | seeds |" in md
    assert "(n=1)" in md  # one run per name: no std
    objective, groups = compare_runs([runs["a"], runs["b"], runs["c"]])
    md = write_comparison(tmp_path / "cmp2", objective, groups).read_text()
    assert "| strategy | runs | seeds |" in md
    assert "| random | 3 | 2 |" in md and "(n=3)" in md
    assert "seed 0" in md  # the repeated seed is said


def test_default_output_folder_is_beside_the_runs(runs, tmp_path, monkeypatch):
    root = runs["a"].parent.parent
    monkeypatch.chdir(tmp_path)
    assert default_out_dir([runs["a"], runs["b"]]) == (root / "sweep" / "comparison").resolve()
    assert default_out_dir([runs["a"], runs["c"]]) == root.resolve() / "comparison"
    objective, groups = compare_runs([runs["a"], runs["b"]])
    path = write_comparison(None, objective, groups)
    assert path == (root / "sweep" / "comparison" / "compare.md").resolve()
    assert (root / "sweep" / "comparison" / "compare.png").is_file()
    assert not (tmp_path / "comparison").exists()
    # an explicit folder still wins
    assert write_comparison(tmp_path / "mine", objective, groups).parent == tmp_path / "mine"


def test_summary_table_for_the_terminal(runs):
    from rich.console import Console

    objective, groups = compare_runs([runs["a"], runs["b"], runs["c"]])
    console = Console(width=200, record=True)
    console.print(summary_table(objective, groups, by="strategy"))
    text = console.export_text()
    assert "strategy" in text and "seeds" in text and "random" in text and "n=3" in text
