"""`nastk study`: tasks x strategies x seeds as ordinary runs, resumed as a whole, one report."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from nastk.cli.main import main
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError
from nastk.pipelines.study.config import StudyConfig
from nastk.pipelines.study.runner import _run_one, run_state
from nastk.run.sqlite_store import RunStore
from nastk.search_spaces.nb201 import nb201_data_missing
from nastk.search_spaces.tnb101 import tnb101_data_missing

MISSING = tnb101_data_missing() or nb201_data_missing()
needs_data = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def study_dict(run_dir: Path, trials: int = 30, seeds: int = 3) -> dict:
    """2 strategies x 2 tabular tasks x 3 seeds."""
    return {
        "name": "small", "run_dir": str(run_dir), "seeds": seeds,
        "tasks": [
            {"name": "tnb_scene", "space": {"name": "tnb101_micro"},
             "evaluator": {"kind": "function",
                           "function": "nastk.search_spaces.tnb101:micro_class_scene"},
             "objective": {"metric": "top1"}, "budget": {"trials": trials},
             "optimum": 54.93630599975586, "worst": 7.484076499938965},
            {"name": "nb201_c10", "space": {"name": "nb201"},
             "evaluator": {"kind": "function", "function": "nastk.search_spaces.nb201:cifar10"},
             "objective": {"metric": "val_acc_12ep"}, "report_metric": "test_acc_200ep",
             "budget": {"trials": trials}, "optimum": 94.3733, "worst": 10.0},
        ],
        "strategies": [{"name": "random"},
                       {"name": "evolution", "label": "rea",
                        "options": {"population": 10, "sample_size": 3}}],
    }


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def per_run_results(run_dir: Path) -> dict[str, list]:
    out = {}
    for store_path in sorted(run_dir.rglob("store.sqlite")):
        with RunStore.open_existing(store_path.parent) as store:
            out[str(store_path.parent.relative_to(run_dir))] = [
                (t.arch.key, t.result.metrics) for t in store.finished()]
    return out


def test_config_names_a_bad_run_and_repeated_labels():
    data = study_dict(Path("unused"))
    data["strategies"].append({"name": "random"})
    with pytest.raises(ConfigError, match="strategy labels \\['random'\\] repeat"):
        parse_config(data, "s.yaml", StudyConfig)
    data = study_dict(Path("unused"))
    data["tasks"][0]["budget"] = {"trials": 0}
    cfg = parse_config(data, "s.yaml", StudyConfig)
    with pytest.raises(ConfigError, match="task 'tnb_scene', strategy 'random', seed 0"):
        cfg.runs("s.yaml")


@pytest.mark.slow
@needs_data
def test_study_runs_every_search_and_reports(tmp_path, capsys):
    cfg = write(tmp_path, "s.yaml", study_dict(tmp_path / "run"))
    assert main(["study", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cross-task leaderboard" in out
    runs = per_run_results(tmp_path / "run")
    assert len(runs) == 12 and all(len(v) == 30 for v in runs.values())
    report = (tmp_path / "run" / "report.md").read_text()
    for part in ("Cross-task leaderboard", "study_curves.png", "queries to target",
                 "Wilcoxon", "## tnb_scene", "## nb201_c10"):
        assert part in report
    assert (tmp_path / "run" / "study_curves.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "run" / "study.json").read_text())
    # the final value of a run is the best top-1 among its trials (objective = report)
    finals = []
    for seed in range(3):
        with RunStore.open_existing(tmp_path / "run" / "tnb_scene" / "rea" /
                                    f"seed_{seed}") as store:
            finals.append(max(t.result.metrics["top1"] for t in store.finished()))
    assert summary["tasks"]["tnb_scene"]["strategies"]["rea"]["mean"] == pytest.approx(
        sum(finals) / 3)
    # a second call runs nothing and writes the same report
    assert main(["study", str(cfg), "--no-progress"]) == 0
    assert "0 searches run, 12 already finished" in capsys.readouterr().err
    assert (tmp_path / "run" / "report.md").read_text() == report
    # an edited task does not pass its old finished runs off as its own: named, nothing runs
    edited = study_dict(tmp_path / "run")
    edited["tasks"][0]["objective"] = {"metric": "top1", "costs": ["flops"]}
    assert main(["study", str(write(tmp_path, "e.yaml", edited)), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "tnb_scene/random/seed_0 was made by another config" in err and "objective" in err
    assert (tmp_path / "run" / "report.md").read_text() == report


def staircase(points, ref):
    """2-D hypervolume (both maximised) by summing the strips under the sorted front."""
    front, area = [], 0.0
    for x, y in sorted(points, reverse=True):
        if not front or y > front[-1][1]:
            front.append((x, y))
    for i, (x, y) in enumerate(front):
        area += (x - ref) * (y - (front[i - 1][1] if i else ref))
    return area


@pytest.mark.slow
@needs_data
def test_a_multi_objective_task_gets_hypervolumes(tmp_path):
    """Objective with costs: each run's hypervolume of (top1, -flops), normalised by the task's
    extremes, equals a hand staircase; NSGA-II's front beats random search's on average here,
    and a task without costs gets no hypervolume."""
    data = study_dict(tmp_path / "run", trials=40, seeds=2)
    data["tasks"][0]["objective"] = {"metric": "top1", "costs": ["flops"]}
    data["strategies"] = [{"name": "random"},
                          {"name": "nsga2", "options": {"population": 10}}]
    cfg = write(tmp_path, "s.yaml", data)
    assert main(["study", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "study.json").read_text())
    vecs = {}
    for s in ("random", "nsga2"):
        for seed in range(2):
            with RunStore.open_existing(tmp_path / "run" / "tnb_scene" / s /
                                        f"seed_{seed}") as store:
                vecs[s, seed] = [(t.result.metrics["top1"], -t.result.costs["flops"])
                                 for t in store.finished()]
    every = [v for vs in vecs.values() for v in vs]
    lo = [min(v[i] for v in every) for i in (0, 1)]
    hi = [max(v[i] for v in every) for i in (0, 1)]
    for s in ("random", "nsga2"):
        hvs = [staircase([tuple((v[i] - lo[i]) / (hi[i] - lo[i]) for i in (0, 1))
                          for v in vecs[s, seed]], -0.1) for seed in range(2)]
        row = summary["tasks"]["tnb_scene"]["strategies"][s]
        assert row["hypervolume"] == pytest.approx(sum(hvs) / 2)
        assert 0.0 < row["hypervolume"] <= 1.21
        assert "hypervolume" not in summary["tasks"]["nb201_c10"]["strategies"][s]
    assert summary["hypervolume_tasks"] == ["tnb_scene"]
    assert [r["strategy"] for r in summary["hypervolume_leaderboard"]] == ["nsga2", "random"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Hypervolume leaderboard" in report and "hypervolume (mean +- std)" in report


@pytest.mark.slow
@needs_data
def test_interrupted_searches_are_resumed_and_the_report_equals_an_uninterrupted_one(
        tmp_path, capsys):
    whole = write(tmp_path, "whole.yaml", study_dict(tmp_path / "whole"))
    assert main(["study", str(whole), "--no-progress"]) == 0
    # the other study: one search stopped after 10 of its 30 trials, one finished, the rest
    # never started
    parts_data = study_dict(tmp_path / "parts")
    parts = write(tmp_path, "parts.yaml", parts_data)
    runs = StudyConfig.model_validate(parts_data).runs()
    short = dict(runs[4][0].config, budget={**runs[4][0].config["budget"], "trials": 10})
    _run_one(short, "test")
    _run_one(runs[7][0].config, "test")
    assert run_state(runs[4][1]) == "partial" and run_state(runs[7][1]) == "done"
    assert main(["study", str(parts), "--no-progress"]) == 0
    assert "11 searches run, 1 already finished" in capsys.readouterr().err
    assert per_run_results(tmp_path / "parts") == per_run_results(tmp_path / "whole")
    assert ((tmp_path / "parts" / "report.md").read_text()
            == (tmp_path / "whole" / "report.md").read_text())


@needs_data
def test_a_store_cut_short_while_being_created_is_a_new_run(tmp_path):
    runs = StudyConfig.model_validate(study_dict(tmp_path / "s", trials=5)).runs()
    empty, tableless = runs[0][1], runs[1][1]
    empty.resolved_run_dir().mkdir(parents=True)
    (empty.resolved_run_dir() / RunStore.FILENAME).touch()
    tableless.resolved_run_dir().mkdir(parents=True)
    with closing(sqlite3.connect(tableless.resolved_run_dir() / RunStore.FILENAME)) as db:
        db.execute("PRAGMA user_version=1")  # an SQLite file with no tables
    assert run_state(empty) == "new" and run_state(tableless) == "new"
    for run, cfg in runs[:2]:
        _run_one(run.config, "test")
        assert run_state(cfg) == "done"


@pytest.mark.slow
@needs_data
def test_a_study_killed_midway_resumes_to_the_uninterrupted_report(tmp_path, capsys):
    data = study_dict(tmp_path / "killed", trials=60)
    cfg = write(tmp_path, "k.yaml", data)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "nastk.cli", "study", str(cfg),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").rglob("store.sqlite"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    started = len(list((tmp_path / "killed").rglob("store.sqlite")))
    assert 4 <= started < 12, "the study was not killed midway"
    assert main(["study", str(cfg), "--no-progress"]) == 0
    whole = write(tmp_path, "w.yaml", {**data, "run_dir": str(tmp_path / "whole")})
    assert main(["study", str(whole), "--no-progress"]) == 0
    assert per_run_results(tmp_path / "killed") == per_run_results(tmp_path / "whole")
    assert ((tmp_path / "killed" / "report.md").read_text()
            == (tmp_path / "whole" / "report.md").read_text())


@pytest.mark.slow
@needs_data
def test_ray_and_in_process_give_identical_runs(tmp_path):
    data = study_dict(tmp_path / "local", trials=15, seeds=2)
    local = write(tmp_path, "local.yaml", data)
    ray_data = {**data, "run_dir": str(tmp_path / "ray"),
                "executor": {"kind": "ray", "num_cpus": 2}}
    on_ray = write(tmp_path, "ray.yaml", ray_data)
    assert main(["study", str(local), "--no-progress"]) == 0
    assert main(["study", str(on_ray), "--no-progress"]) == 0
    assert per_run_results(tmp_path / "ray") == per_run_results(tmp_path / "local")
    assert len(per_run_results(tmp_path / "ray")) == 8


@needs_data
def test_the_example_study_is_valid_and_its_bounds_are_the_tables():
    from nastk.config.schema import load_config
    from nastk.search_spaces.nb201 import NB201Bench
    from nastk.search_spaces.tnb101 import TNB101Bench

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "study.yaml",
                      StudyConfig)
    assert len(cfg.tasks) == 10 and len(cfg.seed_list()) == 10
    assert len(cfg.runs()) == 10 * len(cfg.strategies) * 10
    nb, tnb = NB201Bench.load(), TNB101Bench.load(kind="micro")
    datasets = {"nb201_cifar10": "cifar10", "nb201_cifar100": "cifar100",
                "nb201_imagenet16": "ImageNet16-120"}
    for t in cfg.tasks:
        if t.name in datasets:
            column = nb.column(datasets[t.name], "test200")
        else:
            column = list(tnb.column(t.name.removeprefix("tnb101_")).values())
        assert (t.optimum, t.worst) == (max(column), min(column)), t.name
        # the space's cost model counts the network the evaluator reports
        assert t.objective["costs"] == ["flops"]
        option = t.space["options"]["dataset" if t.name in datasets else "task"]
        assert option == datasets.get(t.name, t.name.removeprefix("tnb101_")), t.name
    assert [t.budget["trials"] for t in cfg.tasks[:3]] == [93, 83, 72]
    # every built-in strategy, and the three peers
    from nastk.core import registry

    # bohb proposes exactly as bo without a scheduler (tests/test_bohb.py): a study of
    # single-fidelity tables would run bo twice
    built_in = {n for n in registry.STRATEGIES.names()
                if registry.STRATEGIES.source(n).endswith("(entry point)")} - {"bohb"}
    assert {s.name for s in cfg.strategies} == built_in
    assert sum(s.name == "optuna" for s in cfg.strategies) == 3


def test_the_real_task_study_example_validates():
    from nastk.config.compose import build_components
    from nastk.config.schema import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "study_tasks.yaml",
                      StudyConfig)
    runs = cfg.runs()
    assert len(runs) == 4 * 2 * 2
    assert {r.task for r, _ in runs} == {"classification", "segmentation", "saliency",
                                         "detection"}
    for _, search in runs[::4]:  # one per task: the objective's metric is the task's
        comps = build_components(search)
        assert comps.objective.metric in comps.task.metrics


@needs_data
def test_study_curves_have_axis_labels(tmp_path, monkeypatch):
    """Every panel of study_curves.png names its axes: trials, and the report metric."""
    import matplotlib.figure

    labels = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, path, *args, **kwargs):
        if Path(path).name == "study_curves.png":
            labels.extend((ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.axison)
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    cfg = write(tmp_path, "s.yaml", study_dict(tmp_path / "run", trials=4, seeds=1))
    assert main(["study", str(cfg), "--no-progress"]) == 0
    assert labels == [("trials", "best top1 so far"), ("trials", "best test_acc_200ep so far")]
