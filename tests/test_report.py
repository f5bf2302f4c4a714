"""Tests for nastk.report: curves, leaderboard, Pareto front, plots and the markdown report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.report import (
    arch_text,
    best_so_far,
    format_count,
    format_duration,
    leaderboard,
    leaderboard_table,
    pareto_points,
    plot_best_so_far,
    plot_compare,
    plot_pareto,
    write_report,
)
from nastk.space.architecture import Architecture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACC = Objective(metric="accuracy", direction="max", costs=("flops",))
LOSS = Objective(metric="loss", direction="min")


def arch(i: int) -> Architecture:
    return Architecture({"depth": i % 5 + 1, "width": [16, 16 * (i % 3 + 1)], "op": f"op{i}"})


def ok(i: int, metric: str = "accuracy", value: float = 0.5, duration: float = 1.0,
       **costs: float) -> Trial:
    result = Result.complete({metric: value, "aux": value / 2}, costs, duration_s=duration)
    return Trial(i, arch(i), Status.COMPLETE, result, started=float(i), finished=float(i) + 1)


def bad(i: int, error: str = "boom", duration: float = 0.5) -> Trial:
    result = Result.failed(error, duration_s=duration)
    return Trial(i, arch(i), Status.FAILED, result, started=float(i), finished=float(i) + 1)


def pending(i: int, status: Status = Status.RUNNING) -> Trial:
    return Trial(i, arch(i), status, None, started=float(i))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000


# --- best so far ---------------------------------------------------------------------------

def test_best_so_far_max_with_failures_and_unsorted_input() -> None:
    trials = [bad(1), ok(2, value=0.5), ok(3, value=0.4), bad(4), ok(5, value=0.7),
              ok(6, value=0.6)]
    expected = [(2, 0.5), (3, 0.5), (4, 0.5), (5, 0.7), (6, 0.7)]
    assert best_so_far(trials, ACC) == expected
    assert best_so_far(list(reversed(trials)), ACC) == expected


def test_best_so_far_min_is_in_metric_units() -> None:
    trials = [ok(1, "loss", 3.0), bad(2), ok(3, "loss", 2.0), ok(4, "loss", 2.5),
              ok(5, "loss", 1.0)]
    assert best_so_far(trials, LOSS) == [(1, 3.0), (2, 3.0), (3, 2.0), (4, 2.0), (5, 1.0)]


def test_best_so_far_skips_running_and_handles_no_success() -> None:
    trials = [ok(1, value=0.3), pending(2), ok(3, value=0.6)]
    assert best_so_far(trials, ACC) == [(1, 0.3), (2, 0.6)]
    assert best_so_far([bad(1), bad(2), pending(3)], ACC) == []
    assert best_so_far([], ACC) == []


# --- leaderboard -----------------------------------------------------------------------------

def test_leaderboard_order_top_k_and_row_content() -> None:
    trials = [ok(1, value=0.5, params=1e4, flops=2e6), bad(2), ok(3, value=0.9, params=2e4),
              ok(4, value=0.7), ok(5, value=0.9), pending(6)]
    rows = leaderboard(trials, ACC, top=3)
    assert [r["trial"] for r in rows] == [3, 5, 4]  # tie at 0.9: lower id first
    assert [r["rank"] for r in rows] == [1, 2, 3]
    first = rows[0]
    assert first["arch_id"] == arch(3).short_id
    assert first["metric"] == pytest.approx(0.9)
    assert first["metrics"] == {"aux": pytest.approx(0.45)}
    assert first["costs"] == {"params": 2e4}
    assert first["duration_s"] == 1.0
    assert first["arch"] == arch_text(arch(3)) == "depth=4 op=op3 width=[16,16]"
    assert len(leaderboard(trials, ACC)) == 4
    assert leaderboard(trials, ACC, top=0) == []


def test_leaderboard_min_direction() -> None:
    trials = [ok(1, "loss", 2.0), ok(2, "loss", 0.5), ok(3, "loss", 1.0), bad(4)]
    assert [r["trial"] for r in leaderboard(trials, LOSS)] == [2, 3, 1]


def test_leaderboard_costs_in_standard_order() -> None:
    t = ok(1, value=0.5, latency_ms=3.0, energy=1.0, flops=5.0, params=7.0)
    assert list(leaderboard([t], ACC)[0]["costs"]) == ["params", "flops", "latency_ms", "energy"]


def test_leaderboard_table_formats_numbers() -> None:
    trials = [ok(1, value=0.931249, params=12_345, flops=1_234_567_890, latency_ms=1.234,
                 duration=125.0), ok(2, value=0.5, params=1_200_000, flops=3_400_000)]
    console = Console(record=True, width=250)
    console.print(leaderboard_table(trials, ACC, title="Top"))
    text = console.export_text()
    for piece in ("Top", "0.9312", "12.3K", "1.2G", "1.23", "1.2M", "3.4M", "2m05s",
                  arch(1).short_id):
        assert piece in text, piece
    assert text.index(arch(1).short_id) < text.index(arch(2).short_id)
    console = Console(record=True, width=200)
    console.print(leaderboard_table([bad(1)], ACC))
    assert "no successful trials" in console.export_text()


def test_leaderboard_table_shows_a_few_other_metrics_by_default() -> None:
    """One further metric ("aux") gets a column; a task with many (per-class IoUs) does not,
    unless asked."""
    def text(trials, **kw):
        console = Console(record=True, width=250)
        console.print(leaderboard_table(trials, ACC, **kw))
        return console.export_text()

    assert "aux" in text([ok(1, value=0.8)])
    assert "aux" not in text([ok(1, value=0.8)], other_metrics=False)
    many = Result.complete({"accuracy": 0.8, **{f"iou_{c}": 0.1 for c in "abcd"}})
    wide = [Trial(1, arch(1), Status.COMPLETE, many, started=1.0, finished=2.0)]
    assert "iou_a" not in text(wide)
    assert "iou_a" in text(wide, other_metrics=True)


def test_formatters() -> None:
    assert format_count(950) == "950"
    assert format_count(12_345) == "12.3K"
    assert format_count(999_960) == "1.0M"
    assert format_count(1.2e9) == "1.2G"
    assert format_count(None) == "-"
    assert format_duration(0.5) == "0.50s"
    assert format_duration(3725) == "1h02m"


# --- pareto ----------------------------------------------------------------------------------

def test_pareto_mask_matches_hand_computed_front() -> None:
    # (flops, accuracy): C is dominated by A, D by B; F, A, B, E form the front
    data = {1: (100, 0.5), 2: (200, 0.7), 3: (150, 0.4), 4: (400, 0.7), 5: (800, 0.9),
            6: (50, 0.3)}
    trials = [ok(i, value=a, flops=f) for i, (f, a) in data.items()]
    trials += [bad(7), ok(8, value=0.99), pending(9)]  # failed, no cost, running: all left out
    pts = pareto_points(trials, ACC, cost="flops")
    assert [t.id for t in pts.trials] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(pts.cost, [100, 200, 150, 400, 800, 50])
    np.testing.assert_allclose(pts.metric, [0.5, 0.7, 0.4, 0.7, 0.9, 0.3])
    front = {t.id for t, m in zip(pts.trials, pts.mask, strict=True) if m}
    assert front == {1, 2, 5, 6}
    _, _, _, mask = pts  # unpacks like a tuple
    assert mask.dtype == bool


def test_pareto_mask_min_direction() -> None:
    data = {1: (100, 2.0), 2: (200, 1.0), 3: (300, 1.5), 4: (50, 3.0)}
    trials = [ok(i, "loss", v, params=c) for i, (c, v) in data.items()]
    pts = pareto_points(trials, LOSS, cost="params")
    assert {t.id for t, m in zip(pts.trials, pts.mask, strict=True) if m} == {1, 2, 4}
    empty = pareto_points([bad(1)], LOSS, cost="params")
    assert len(empty.trials) == 0 and empty.mask.shape == (0,)


# --- plots -----------------------------------------------------------------------------------

def _mixed_trials(n: int = 40) -> list[Trial]:
    rng = np.random.default_rng(0)
    trials: list[Trial] = []
    for i in range(1, n + 1):
        if i % 7 == 3:
            trials.append(bad(i, error=f"CUDA out of memory at trial {i}"))
            continue
        flops = float(10 ** rng.uniform(5, 8))
        acc = float(np.clip(0.5 + 0.06 * np.log10(flops) - 0.3 + rng.normal(0, 0.05), 0, 1))
        trials.append(ok(i, value=acc, duration=float(rng.uniform(1, 30)), flops=flops,
                         params=flops / 50, latency_ms=flops / 1e6))
    return trials


def test_plots_write_pngs(tmp_path: Path) -> None:
    trials = _mixed_trials()
    assert_png(plot_best_so_far(trials, ACC, tmp_path / "bsf.png", label="random"))
    assert_png(plot_pareto(trials, ACC, tmp_path / "pareto.png", cost="flops"))
    assert_png(plot_pareto(trials, ACC, tmp_path / "pareto_lat.png", cost="latency_ms"))
    assert_png(plot_best_so_far([bad(1), pending(2)], ACC, tmp_path / "none.png"))
    assert_png(plot_pareto([bad(1)], ACC, tmp_path / "pareto_none.png"))


def test_plot_compare(tmp_path: Path) -> None:
    curves = {
        name: [best_so_far(_mixed_trials(30 + seed), ACC) for seed in range(3)]
        for name in ("random", "evolution")
    }
    curves["empty"] = []
    assert_png(plot_compare(curves, tmp_path / "compare.png", ACC))
    assert_png(plot_compare({}, tmp_path / "compare_none.png", ACC))


# --- markdown report -------------------------------------------------------------------------

def _leaderboard_section(text: str) -> str:
    return text.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]


def test_write_report(tmp_path: Path) -> None:
    long_error = "RuntimeError: " + "x" * 500
    trials = [*_mixed_trials(20), bad(21, error=long_error), pending(22),
              pending(23, Status.INTERRUPTED)]
    meta = {"space": "small_cnn", "task": "classification", "strategy": "random", "seed": 0,
            "budget": 25}
    path = write_report(tmp_path / "run", trials, ACC, title="My search", meta=meta)
    assert path == tmp_path / "run" / "report.md"
    text = path.read_text()
    assert text.startswith("# My search\n")
    assert "| trials | 23 |" in text
    n_failed = sum(t.status is Status.FAILED for t in trials)
    assert f"| failed | {n_failed} |" in text
    assert "| running (no result yet) | 1 |" in text
    assert "| interrupted | 1 |" in text
    for key, value in meta.items():
        assert f"| {key} | {value} |" in text
    # leaderboard: best first, at most 10 rows, no running trial
    best = leaderboard(trials, ACC, top=1)[0]
    board = _leaderboard_section(text)
    board_rows = [line for line in board.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(board_rows) == 10
    assert best["arch_id"] in board_rows[0]
    assert arch(22).short_id not in board
    # pareto front table and plot
    pts = pareto_points(trials, ACC, cost="flops")
    front_ids = [t.arch.short_id for t, m in zip(pts.trials, pts.mask, strict=True) if m]
    pareto = text.split("## Pareto front", 1)[1].split("\n## ", 1)[0]
    assert all(a in pareto for a in front_ids)
    assert "![pareto front](pareto.png)" in text
    # failed trials with their (truncated) errors; unfinished ones listed
    assert "CUDA out of memory at trial 3" in text
    assert "RuntimeError: xxx" in text and "x" * 300 not in text
    assert "## Unfinished trials (2)" in text and "interrupted" in text
    assert "![best so far](best_so_far.png)" in text
    assert_png(tmp_path / "run" / "best_so_far.png")
    assert_png(tmp_path / "run" / "pareto.png")


def test_write_report_zero_successes(tmp_path: Path) -> None:
    trials = [bad(1, error="shape mismatch"), bad(2, error="nan loss"), pending(3)]
    path = write_report(tmp_path, trials, ACC, title="Nothing worked", meta={})
    text = path.read_text()
    assert "No successful trials" in text
    assert "none: no successful trial" in text
    assert "shape mismatch" in text and "nan loss" in text
    assert "Skipped" in text and "pareto.png" not in text
    assert not (tmp_path / "pareto.png").exists()
    assert_png(tmp_path / "best_so_far.png")


def test_write_report_without_the_cost_skips_pareto(tmp_path: Path) -> None:
    (tmp_path / "pareto.png").write_bytes(b"stale")
    trials = [ok(1, "loss", 1.0), ok(2, "loss", 0.5)]
    text = write_report(tmp_path, trials, LOSS, title="t", meta={"seed": 1}).read_text()
    assert "no successful trial reports 'flops'" in text
    assert not (tmp_path / "pareto.png").exists()
    board_rows = [line for line in _leaderboard_section(text).splitlines()
                  if re.match(r"\| \d+ \|", line)]
    assert arch(2).short_id in board_rows[0]


def test_write_report_empty(tmp_path: Path) -> None:
    text = write_report(tmp_path, [], ACC, title="empty", meta={}).read_text()
    assert "| trials | 0 |" in text
    assert_png(tmp_path / "best_so_far.png")


def test_write_report_with_strategy_curves_and_a_space_renderer(tmp_path: Path) -> None:
    trials = _mixed_trials(12)
    rewards = [0.2, 0.3, 0.25, 0.4, 0.5, 0.45]
    path = write_report(tmp_path / "run", trials, ACC, title="t", meta={},
                        curves={"mean reward per update": rewards, "unused": []},
                        render=lambda a: f"GENO<{a.short_id}>")
    text = path.read_text()
    section = text.split("## Strategy learning", 1)[1].split("\n## ", 1)[0]
    # first third [0.2, 0.3] -> 0.25, last third [0.5, 0.45] -> 0.475
    assert "| mean reward per update | 6 | 0.2000 | 0.4500 | 0.2500 | 0.4750 | +0.225 |" in section
    assert "unused" not in section
    assert_png(tmp_path / "run" / "strategy.png")
    best = leaderboard(trials, ACC, top=1)[0]
    assert f"`GENO<{best['arch_id']}>`" in _leaderboard_section(text)
    # without curves the section and a stale plot go away
    write_report(tmp_path / "run", trials, ACC, title="t", meta={})
    assert "Strategy learning" not in (tmp_path / "run" / "report.md").read_text()
    assert not (tmp_path / "run" / "strategy.png").exists()


# --- early-stopped trials --------------------------------------------------------------------

def stopped(i: int, value: float, **info) -> Trial:
    result = Result.complete({"accuracy": value}, {"flops": 1e6 * i}, duration_s=1.0, info=info)
    return Trial(i, arch(i), Status.COMPLETE, result, started=float(i), finished=float(i) + 1)


def _stopping_trials() -> list[Trial]:
    return [ok(1, value=0.9, flops=1e6), stopped(2, 0.8, early_stopped=True, epochs=3),
            stopped(3, 0.7, stopped_epoch=5, early_stopped=True),
            stopped(4, 0.6, epochs=20)]  # epochs alone: trained in full


def test_leaderboard_rows_say_when_a_trial_stopped_early() -> None:
    rows = {r["trial"]: r for r in leaderboard(_stopping_trials(), ACC)}
    assert rows[1]["stopped"] is None and rows[4]["stopped"] is None
    assert rows[2]["stopped"] == "stopped at epoch 3"
    assert rows[3]["stopped"] == "stopped at epoch 5"


def test_report_marks_early_stopped_trials(tmp_path: Path) -> None:
    text = write_report(tmp_path, _stopping_trials(), ACC, title="t", meta={}).read_text()
    board = _leaderboard_section(text)
    rows = {int(line.split("|")[2]): line for line in board.splitlines()
            if re.match(r"\| \d+ \|", line)}
    assert "stopped at epoch 3" in rows[2] and "stopped at epoch 5" in rows[3]
    assert "stopped" not in rows[1] and "stopped" not in rows[4]
    assert "early" in board.split("\n\n")[-1] or "stopped early" in board
    # without early stopping, no such column
    plain = write_report(tmp_path / "p", [ok(1, flops=1.0)], ACC, title="t", meta={})
    assert "stopped" not in _leaderboard_section(plain.read_text())


def test_leaderboard_table_marks_early_stopped_trials() -> None:
    console = Console(width=250, record=True)
    console.print(leaderboard_table(_stopping_trials(), ACC))
    text = console.export_text()
    lines = {int(m.group(1)): line for line in text.splitlines()
             if (m := re.match(r"\D*\d+\D+(\d+)\s", line))}
    assert "stopped at epoch 3" in lines[2] and "stopped at epoch 5" in lines[3]
    assert "stopped" not in lines[1]
    console = Console(width=250, record=True)
    console.print(leaderboard_table([ok(1, flops=1.0)], ACC))
    assert "stopped" not in console.export_text()


# --- supernet training history ---------------------------------------------------------------

HISTORY = [
    {"epoch": e, "phase": 1 if e <= 3 else 2, "lr": 0.1,
     "train_loss_largest": 2.0 / e, "train_loss_smallest": 2.5 / e, "train_loss_kd": 0.3 / e,
     "val_accuracy_largest": 0.5 + 0.05 * e, "val_accuracy_smallest": 0.4 + 0.04 * e,
     "val_loss_largest": 1.0 / e}
    for e in range(1, 7)
]


def test_supernet_history_plot(tmp_path: Path) -> None:
    from nastk.report.plots import plot_supernet_history, supernet_history_figure

    fig = supernet_history_figure(HISTORY, "accuracy")
    loss_ax, val_ax = fig.axes
    loss_labels = {line.get_label() for line in loss_ax.get_lines()}
    assert {"train_loss_largest", "train_loss_smallest", "train_loss_kd"} <= loss_labels
    val = {line.get_label(): line for line in val_ax.get_lines()}
    assert list(val["largest subnet"].get_ydata()) == pytest.approx(
        [r["val_accuracy_largest"] for r in HISTORY])
    assert list(val["smallest subnet"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    # the phase boundary between epochs 3 and 4, on both panels
    for ax in (loss_ax, val_ax):
        bounds = [line for line in ax.get_lines() if line.get_gid() == "phase boundary"]
        assert [b.get_xdata()[0] for b in bounds] == [3.5]
    assert_png(plot_supernet_history(HISTORY, tmp_path / "history.png", "accuracy"))
    assert_png(plot_supernet_history([], tmp_path / "empty.png", "accuracy"))


def test_supernet_history_without_phase_changes_has_no_boundary() -> None:
    from nastk.report.plots import supernet_history_figure

    one_phase = [{**r, "phase": 1} for r in HISTORY]
    for ax in supernet_history_figure(one_phase, "accuracy").axes:
        assert not [line for line in ax.get_lines() if line.get_gid() == "phase boundary"]


# --- pareto tick labels ----------------------------------------------------------------------

@pytest.mark.parametrize("base", [1.0e9, 2.345e6, 7.5e3])
def test_pareto_tick_labels_are_distinct_for_close_costs(base: float) -> None:
    from nastk.report.plots import pareto_figure

    # costs within 0.8 % of each other
    trials = [ok(i, value=0.5 + 0.01 * i, flops=base * (1 + 0.001 * i)) for i in range(1, 9)]
    fig = pareto_figure(trials, ACC, cost="flops")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3
    assert len(set(labels)) == len(labels), labels


def test_pareto_tick_labels_stay_short_when_far_apart() -> None:
    from nastk.report.plots import pareto_figure

    trials = [ok(i, value=0.5 + 0.01 * i, flops=1e6 * i) for i in range(1, 9)]
    fig = pareto_figure(trials, ACC, cost="flops")
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(set(labels)) == len(labels)
    assert all(len(lab) <= 5 for lab in labels), labels  # e.g. 2M, 4.5M, not 2.000000M


def test_report_summary_counts_trials_a_scheduler_stopped_even_outside_the_top(
        tmp_path: Path) -> None:
    def stopped(i: int, value: float, epochs: int) -> Trial:
        result = Result.complete({"accuracy": value}, {"flops": 1.0}, duration_s=1.0,
                                 info={"early_stopped": True, "epochs": epochs})
        return Trial(i, arch(i), Status.COMPLETE, result, started=float(i),
                     finished=float(i) + 1)

    trials = [ok(i, value=0.9 + i / 100, flops=1.0) for i in range(1, 4)]
    trials += [stopped(4, 0.1, 2), stopped(5, 0.2, 2), stopped(6, 0.3, 4)]
    text = write_report(tmp_path / "run", trials, ACC, title="t", meta={}, top=3).read_text()
    assert ("| complete, stopped early (scheduler) | 3 (2 stopped at epoch 2, 1 stopped at "
            "epoch 4) |") in text
