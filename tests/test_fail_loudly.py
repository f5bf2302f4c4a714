"""A run that cannot succeed stops at once with the reason and writes nothing; bad results,
interrupts and reused folders are reported as such (issue "fail loudly")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nastk import Architecture
from nastk.cli.main import main
from nastk.evaluation.base import FunctionEvaluator
from nastk.run.sqlite_store import RunStore

TINY_CNN = {"stages": 2, "depths": [1], "widths": [8], "kernels": [3], "expansions": [1]}
TRAIN = {"epochs": 1, "batch_size": 8, "latency": False}


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def seg_search(root: Path, run_dir: Path, **task_options) -> dict:
    return {"name": "seg", "run_dir": str(run_dir), "space": {"name": "small_cnn",
                                                              "options": TINY_CNN},
            "task": {"name": "segmentation",
                     "options": {"dataset": "camvid", "root": str(root), "size": 16,
                                 **task_options}},
            "strategy": "random", "evaluator": {"kind": "train", "train": TRAIN},
            "budget": {"trials": 3}}


def camvid(root: Path, label_size: tuple[int, int] = (12, 10)) -> Path:
    rng = np.random.default_rng(0)
    for split, names in (("train", ["a", "b", "c"]), ("val", ["d"]), ("test", ["e"])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
                root / split / f"{name}.png")
            w, h = label_size
            Image.fromarray(np.zeros((h, w), dtype=np.uint8), mode="L").save(
                root / f"{split}annot" / f"{name}.png")
    return root


def test_missing_dataset_root_stops_before_the_first_trial_writing_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["search", write(tmp_path / "s.yaml", seg_search(tmp_path / "nowhere", run)),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path / "nowhere") in err and "expected layout" in err
    assert not run.exists()


@pytest.mark.parametrize("broken", ["truncated", "sizes"])
def test_unreadable_first_image_or_mismatched_sizes_stop_the_run_naming_the_file(
        tmp_path, capsys, broken):
    root = camvid(tmp_path / "CamVid", label_size=(12, 10) if broken == "truncated" else (8, 8))
    if broken == "truncated":
        for name in ("a", "b", "c"):
            path = root / "train" / f"{name}.png"
            path.write_bytes(path.read_bytes()[:40])
    run = tmp_path / "run"
    code = main(["search", write(tmp_path / "s.yaml", seg_search(root, run)), "--no-progress"])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 2 and not run.exists()
    if broken == "truncated":
        assert "cannot read image" in err and str(root / "train") in err
    else:
        assert "12x10 but its label" in err and "8x8" in err


def test_an_empty_split_stops_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"name": "spots", "run_dir": "run", "plugins": ["spots_task"],
           "space": {"name": "small_cnn", "options": TINY_CNN},
           "task": {"name": "spots_test", "options": {"n_samples": 3}},  # 0 validation images
           "strategy": "random", "evaluator": {"kind": "train", "train": TRAIN},
           "budget": {"trials": 2}}
    assert main(["search", write(tmp_path / "s.yaml", cfg), "--no-progress"]) == 2
    assert "split 'val' is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_misspelt_objective_metric_is_refused_with_a_suggestion(tmp_path, capsys):
    cfg = {"name": "q", "run_dir": str(tmp_path / "run"), "space": "small_cnn",
           "task": {"name": "classification", "options": {"dataset": "digits"}},
           "objective": {"metric": "acuracy"}, "evaluator": {"kind": "train", "train": TRAIN},
           "budget": {"trials": 2}}
    assert main(["search", write(tmp_path / "s.yaml", cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "'acuracy' is not a metric of task 'classification'" in err
    assert "did you mean 'accuracy'" in err
    assert not (tmp_path / "run").exists()


def test_a_function_returning_the_wrong_type_fails_the_trial_with_what_it_should_return():
    arch = Architecture({"x": 1})
    result = FunctionEvaluator(lambda a: 0.5).evaluate(arch)
    assert not result.ok and "must be a mapping of names to numbers, got float" in result.error
    result = FunctionEvaluator(lambda a: {"acc": "high"}).evaluate(arch)
    assert not result.ok and "'acc' must be a number, got str" in result.error
    assert FunctionEvaluator(lambda a: ({"acc": 1}, {"flops": 2})).evaluate(arch).ok


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    cfg = {"name": "q", "space": "small_cnn", "task": "classification",
           "evaluator": {"kind": "train", "train": TRAIN}, "budget": {"trials": 1}}
    code = main(["search", write(tmp_path / "s.yaml", cfg), "--run-dir",
                 str(tmp_path / "taken"), "--no-progress"])
    assert code == 2 and "is a file, not a folder" in capsys.readouterr().err


def toy_config(tmp_path: Path, **changes) -> dict:
    cfg = {"name": "toy", "run_dir": str(tmp_path / "run"), "plugins": ["toy_plugin"],
           "space": "toy_grid", "strategy": {"name": "evolution", "options": {"population": 4}},
           "objective": {"metric": "score"},
           "evaluator": {"kind": "function", "function": "toy_plugin:objective"},
           "budget": {"trials": 4}}
    cfg.update(changes)
    return cfg


def test_resume_refusal_names_the_field_and_both_values(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", toy_config(tmp_path))
    assert main(["search", path, "--no-progress"]) == 0
    changed = toy_config(tmp_path, strategy={"name": "evolution", "options": {"population": 6}})
    assert main(["search", write(tmp_path / "t.yaml", changed), "--resume",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "strategy.options.population: 4 -> 6" in err


def test_interrupt_writes_the_report_and_names_the_resume_command(tmp_path, capsys,
                                                                  monkeypatch):
    import toy_plugin

    calls = {"n": 0}
    original = toy_plugin.objective

    def stopping(arch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(arch)

    monkeypatch.setattr(toy_plugin, "objective", stopping)
    cfg = toy_config(tmp_path, run_dir=None)
    path = write(tmp_path / "s.yaml", cfg)
    run = tmp_path / "elsewhere"
    code = main(["search", path, "--run-dir", str(run), "--trials", "6", "--no-progress"])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 130
    assert f"nastk search {path} --resume --run-dir {run} --trials 6" in err
    assert (run / "report.md").is_file()
    assert "| trials | 2 |" in (run / "report.md").read_text()


def test_end_of_run_count_leaves_out_interrupted_rows(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", toy_config(tmp_path))
    assert main(["search", path, "--no-progress"]) == 0
    with RunStore.open_existing(tmp_path / "run") as store:  # a row left by a killed process
        store.start_trial(Architecture({"x": 99, "y": 99}))
    capsys.readouterr()
    assert main(["search", path, "--resume", "--no-progress"]) == 0
    assert "4 trials (0 failed)" in capsys.readouterr().out


def test_distill_refuses_a_run_folder_that_holds_a_distillation(tmp_path, capsys):
    run = tmp_path / "kd"
    run.mkdir()
    (run / "distill.json").write_text(json.dumps({"old": True}))
    cfg = {"name": "kd", "run_dir": str(run), "task": "classification",
           "student": {"space": "small_cnn", "arch": {}},
           "teacher": {"space": "small_cnn", "arch": {}, "checkpoint": str(tmp_path / "t.pt")}}
    assert main(["distill", write(tmp_path / "d.yaml", cfg), "--no-progress"]) == 2
    assert "already holds a distillation" in capsys.readouterr().err
    assert json.loads((run / "distill.json").read_text()) == {"old": True}


def test_supernet_resume_without_a_checkpoint_writes_nothing(tmp_path, capsys):
    cfg = {"name": "sn", "run_dir": str(tmp_path / "sn"), "space": "ofa_mbv3",
           "task": "classification"}
    code = main(["supernet", "train", write(tmp_path / "t.yaml", cfg), "--resume",
                 "--no-progress"])
    assert code == 2 and "no checkpoint at" in capsys.readouterr().err
    assert not (tmp_path / "sn").exists()


def test_a_failed_ray_connection_leaves_no_store_and_the_retry_runs(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", toy_config(tmp_path))
    assert main(["search", path, "--address", "127.0.0.1:1", "--no-progress"]) == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["search", path, "--no-progress"]) == 0  # not blocked by a half-made run


def test_plugin_option_errors_name_the_config_file(tmp_path, capsys):
    cfg = {"name": "q", "run_dir": str(tmp_path / "run"),
           "space": {"name": "small_cnn", "options": {"stages": 0}}, "task": "classification"}
    path = write(tmp_path / "bad.yaml", cfg)
    assert main(["search", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{path}: space.options" in err and "stages" in err


def test_a_result_without_the_objectives_metric_fails_and_the_run_stops(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", toy_config(tmp_path, objective={"metric": "accuracy"},
                                                 budget={"trials": 20}))
    assert main(["search", path, "--no-progress"]) == 1  # nothing succeeded
    captured = capsys.readouterr()
    err = captured.err.replace("\n", "")
    assert "no 'accuracy' (the objective's metric); it has metrics ['score']" in err
    with RunStore.open_existing(tmp_path / "run") as store:
        trials = store.finished()
    assert len(trials) == 5 and not any(t.result.ok for t in trials)  # max_failure_streak
    assert "5 trials all failed with the same error" in captured.out.replace("\n", "")


def test_resume_of_an_empty_store_is_reported_not_restarted(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", toy_config(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "store.sqlite").write_bytes(b"")
    assert main(["search", path, "--resume", "--no-progress"]) == 2
    assert "is empty (0 bytes)" in capsys.readouterr().err.replace("\n", "")
    assert (tmp_path / "run" / "store.sqlite").stat().st_size == 0


@pytest.mark.parametrize("flags, field", [(["--trials", "0"], "budget.trials"),
                                          (["--trials", "-3"], "budget.trials"),
                                          (["--time-s", "-5"], "budget.time_s")])
def test_bad_budget_flags_are_refused_like_the_same_yaml(tmp_path, capsys, flags, field):
    """The command line's budget overrides are validated as the config's own fields are:
    exit 2 naming the field, nothing written (they used to run nothing, exit 1 and leave a
    run folder that blocked a plain rerun)."""
    path = write(tmp_path / "s.yaml", toy_config(tmp_path))
    assert main(["search", path, *flags, "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert field in err and flags[1] in err
    assert not (tmp_path / "run").exists()


def test_missing_benchmark_tables_stop_the_run_before_its_first_trial(tmp_path, capsys,
                                                                     monkeypatch):
    """A look-up evaluator whose tables cannot be found: exit 2 with where to put them, no
    trial run, nothing written (it used to fail five trials and leave a run folder)."""
    from nastk.data import dirs

    monkeypatch.setattr(dirs, "candidate_dirs", lambda env_var: [tmp_path / "nowhere"])
    monkeypatch.setattr("nastk.data.tabular._LOADED", {})
    from nastk.search_spaces import nb201

    # a look-up function not yet used in this process (an earlier test may have read tables)
    monkeypatch.setattr(nb201, "cifar10", nb201._function("cifar10", "cifar10"))
    cfg = {"name": "nb", "run_dir": str(tmp_path / "run"), "space": "nb201",
           "strategy": "random", "objective": {"metric": "val_acc_12ep"},
           "evaluator": {"kind": "function", "function": "nastk.search_spaces.nb201:cifar10"},
           "budget": {"trials": 5}}
    assert main(["search", write(tmp_path / "s.yaml", cfg), "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "NAS-Bench-201 tables not found" in err and "NASTK_NB201_DIR" in err
    assert not (tmp_path / "run").exists()


def _png(path: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("mode, refused", [("full", True), ("sample", True),
                                           ("first-batch", False)])
def test_a_corrupt_file_beyond_the_first_batches_is_found_before_the_first_trial(
        tmp_path, capsys, mode, refused):
    """A broken image in a split the first batches do not read (the run's test split, which
    holds CamVid's official val images): the default full check (and a sample that reads it)
    refuses the run up front, naming the file; first-batch, as before, does not look."""
    from nastk.config.compose import build_components
    from nastk.config.schema import parse_config

    root = camvid(tmp_path / "CamVid")
    bad = root / "val" / "d.png"
    bad.write_bytes(b"not a png at all")
    run = tmp_path / "run"
    config = seg_search(root, run, data_check=mode)
    if refused:
        assert main(["search", write(tmp_path / "s.yaml", config), "--no-progress"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert str(bad) in err and "cannot read image" in err
        assert not run.exists()
    else:  # the checks before the first trial pass: the search would start
        build_components(parse_config(config))


@pytest.mark.slow
def test_a_data_error_during_training_stops_the_search_and_resume_continues(
        tmp_path, capsys, monkeypatch):
    """A training image that goes bad after the checks (or was not checked): the search stops
    at the first read with the file named, exit 2; the candidate is recorded interrupted, not
    failed (the strategy is told nothing); after the file is fixed, --resume finishes."""
    from nastk.core.result import Status
    from nastk.evaluation import preflight

    root = camvid(tmp_path / "CamVid")
    bad = root / "train" / "b.png"
    checked = preflight.check_task_data

    def check_then_break(*args, **kwargs):
        checked(*args, **kwargs)
        bad.write_bytes(b"broken after the checks")

    monkeypatch.setattr(preflight, "check_task_data", check_then_break)
    monkeypatch.setattr("nastk.config.compose.check_task_data", check_then_break)
    run = tmp_path / "run"
    path = write(tmp_path / "s.yaml", seg_search(root, run, data_check="first-batch"))
    assert main(["search", path, "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(bad) in err and "the search stopped" in err and "--resume" in err
    with RunStore.open_existing(run) as st:
        assert st.count(Status.FAILED) == 0 and st.count(Status.COMPLETE) == 0
        assert st.count(Status.INTERRUPTED) == 1 and st.count(Status.RUNNING) == 0
        assert not st.untold() and st.load_strategy_state() is not None

    monkeypatch.setattr(preflight, "check_task_data", checked)
    monkeypatch.setattr("nastk.config.compose.check_task_data", checked)
    _png(bad)
    assert main(["search", path, "--resume", "--no-progress"]) == 0
    with RunStore.open_existing(run) as st:
        # this space holds one architecture: the interrupted candidate, evaluated now
        assert st.count(Status.COMPLETE) == 1 and st.count(Status.FAILED) == 0
