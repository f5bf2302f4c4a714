"""`nastk recipe`: a DetOFA-like chain (pretrain a supernet, search it by weight sharing, fit a
path filter, fine-tune on the kept paths from the pretrained weights, NSGA-II search, export the
Pareto front) from one YAML file, with the toy_supernet test plugin: outputs feed the next
stage, finished stages are skipped, a cut-off stage resumes inside itself, and bad recipes fail
before anything runs."""

import copy
import json
from pathlib import Path

import pytest
import yaml

import nastk.cli.commands.recipe as recipe_cmd
from nastk.cli.main import main
from nastk.evaluation.weight_sharing import WeightSharingEvaluator
from nastk.pipelines.recipe import OUTPUTS, predicted_outputs
from nastk.run.lock import lock_run_dir
from nastk.run.record import open_run
from nastk.training.supernet import SupernetTrainer

TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 300, "image_size": 16,
                    "num_classes": 4}}
TRAINING = {"epochs": 1, "batch_size": 32, "n_random": 2, "bn_calib_batches": 2,
            "num_threads": 1}
COMMANDS = ("train_supernet", "run_search_config", "fit_from_run", "export_front", "export_run")


def chain(run_dir: Path) -> dict:
    return {
        "name": "detofa", "run_dir": str(run_dir), "seed": 0, "plugins": ["toy_supernet"],
        "defaults": {"space": "toy_supernet", "task": TASK, "training": TRAINING,
                     "objective": {"costs": ["flops"]},
                     "evaluator": {"kind": "supernet", "supernet": {"calib_batches": 2}}},
        "stages": [
            {"name": "pretrain", "kind": "supernet_train", "config": {}},
            {"name": "sample", "kind": "search",
             "config": {"strategy": "random", "budget": {"trials": 30},
                        "evaluator": {"supernet": {"checkpoint": "${pretrain.checkpoint}"}}}},
            {"name": "filter", "kind": "path_filter_fit", "run": "${sample.run_dir}",
             "options": {"cost": "flops", "buckets": 2, "holdout": 0.25}},
            {"name": "finetune", "kind": "supernet_train",
             "config": {"path_filter": {"file": "${filter.file}", "keep_ratio": 0.5,
                                        "n_samples": 40},
                        "training": {"init": {"from": "${pretrain.checkpoint}",
                                              "part": "all"}}}},
            {"name": "search", "kind": "search",
             "config": {"strategy": {"name": "nsga2", "options": {"population": 6}},
                        "budget": {"trials": 12},
                        "evaluator": {"supernet": {"checkpoint": "${finetune.checkpoint}"}}}},
            {"name": "export", "kind": "export", "run": "${search.run_dir}",
             "options": {"front": True}},
        ]}


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "recipe.json").read_text())["stages"]


@pytest.fixture
def no_commands(monkeypatch):
    """Every stage command replaced by one that records its call and fails the test."""
    calls = []
    for name in COMMANDS:
        def refuse(*args, _name=name, **kwargs):
            calls.append(_name)
            raise AssertionError(f"{_name} was called")

        monkeypatch.setattr(recipe_cmd, name, refuse)
    return calls


@pytest.fixture(scope="module")
def detofa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    run_dir = tmp / "runs" / "detofa"
    path = write(tmp / "detofa.yaml", chain(run_dir))
    assert main(["recipe", path, "--no-progress"]) == 0
    return tmp, path, run_dir


def test_the_chain_runs_and_each_stage_feeds_the_next(detofa):
    _, _, run_dir = detofa
    stages = state(run_dir)
    assert list(stages) == ["pretrain", "sample", "filter", "finetune", "search", "export"]
    assert all(s["status"] == "done" for s in stages.values())
    for name, s in stages.items():  # the paths predicted before anything ran are the real ones
        predicted = predicted_outputs(s["kind"], run_dir / name)
        for key, kind in OUTPUTS[s["kind"]].items():
            if kind == "path":
                assert s["outputs"][key] == predicted[key], (name, key)
    pretrain = stages["pretrain"]["outputs"]["checkpoint"]
    assert Path(pretrain).is_file()
    sample = open_run(run_dir / "sample")
    assert len(sample.finished) == 30
    assert str(sample.config.evaluator.supernet.checkpoint) == pretrain
    assert isinstance(stages["sample"]["outputs"]["best_trial"], int)
    assert isinstance(stages["sample"]["outputs"]["best_score"], float)

    filt = stages["filter"]["outputs"]["file"]
    assert Path(filt).is_file() and Path(filt).parent == run_dir / "filter"
    finetune = json.loads((run_dir / "finetune" / "config.json").read_text())
    assert finetune["path_filter"]["file"] == filt
    assert finetune["training"]["init"]["from_"] == pretrain
    assert stages["finetune"]["resolved"]["config"]["training"]["init"]["from"] == pretrain
    init = json.loads((run_dir / "finetune" / "init_report.json").read_text())
    assert init["file"] == pretrain and init["loaded"] and not init["mismatched"]

    search = open_run(run_dir / "search")
    assert len(search.finished) == 12
    assert str(search.config.evaluator.supernet.checkpoint) == str(
        run_dir / "finetune" / "supernet.pt")
    assert search.config.strategy.name == "nsga2" and search.config.seed == 0

    front = json.loads((run_dir / "export" / "front.json").read_text())
    ids = [p["trial"] for p in front["points"]]
    assert ids and ids == stages["export"]["outputs"]["trials"]
    by_id = {t.id: t for t in search.finished}
    points = [(by_id[i].result.metrics["accuracy"], by_id[i].result.costs["flops"]) for i in ids]
    for t in search.finished:  # no trial dominates a front point
        acc, flops = t.result.metrics["accuracy"], t.result.costs["flops"]
        assert not any(acc >= a and flops <= f and (acc > a or flops < f) for a, f in points)
    for i in ids:
        assert (run_dir / "export" / f"trial_{i}" / "model.pt").is_file()
    assert (run_dir / "recipe.yaml").read_text() == Path(detofa[1]).read_text()
    resolved = yaml.safe_load((run_dir / "resolved.yaml").read_text())
    assert resolved["stages"][3]["config"]["path_filter"]["file"] == filt


def test_running_again_skips_every_finished_stage(detofa, no_commands, capsys):
    _, path, run_dir = detofa
    files = [run_dir / "pretrain" / "supernet.pt", run_dir / "sample" / "store.sqlite",
             run_dir / "filter" / "filter.pt", run_dir / "finetune" / "supernet.pt",
             run_dir / "search" / "store.sqlite", run_dir / "export" / "front.json"]
    before = [f.stat().st_mtime_ns for f in files]
    assert main(["recipe", path, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert no_commands == []
    assert [f.stat().st_mtime_ns for f in files] == before
    for name in ("pretrain", "sample", "filter", "finetune", "search", "export"):
        assert f"stage {name}: done (skipped)" in captured.err
    assert "done (skipped)" in captured.out  # the summary table


def test_a_changed_done_stage_is_refused_and_redo_runs_it_again(detofa, no_commands, capsys,
                                                                 monkeypatch):
    tmp, _, run_dir = detofa
    data = chain(run_dir)
    data["stages"][-1]["options"] = {"trial": "${search.best_trial}"}
    changed = write(tmp / "changed.yaml", data)
    assert main(["recipe", changed, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "stage 'export' is done, but its resolved config changed" in err
    assert "options.front: True -> (not set)" in err and "--redo export" in err
    assert no_commands == []

    monkeypatch.undo()  # the real commands again
    assert main(["recipe", changed, "--no-progress", "--redo", "export"]) == 0
    assert (run_dir / "export.old-1" / "front.json").is_file()  # moved aside, not deleted
    best = state(run_dir)["search"]["outputs"]["best_trial"]
    record = json.loads((run_dir / "export" / "arch.json").read_text())
    assert record["trial"] == best
    assert state(run_dir)["export"]["outputs"]["trials"] == [best]
    assert not (run_dir / "export" / "front.json").exists()


def small_recipe(run_dir: Path) -> dict:
    return {
        "name": "small", "run_dir": str(run_dir), "plugins": ["toy_supernet"],
        "defaults": {"space": "toy_supernet", "task": TASK},
        "stages": [
            {"name": "pretrain", "kind": "supernet_train",
             "config": {"training": {**TRAINING, "epochs": 2}}},
            {"name": "search", "kind": "search",
             "config": {"strategy": "random", "budget": {"trials": 8},
                        "evaluator": {"kind": "supernet",
                                      "supernet": {"checkpoint": "${pretrain.checkpoint}",
                                                   "calib_batches": 2}}}},
            {"name": "best", "kind": "export", "run": "${search.run_dir}",
             "options": {"trial": "${search.best_trial}"}},
        ]}


def test_an_interrupted_stage_resumes_inside_itself(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "small"
    path = write(tmp_path / "small.yaml", small_recipe(run_dir))

    # 1. Ctrl-C after the supernet's first epoch (its checkpoint is saved)
    train_epoch = SupernetTrainer._train_epoch
    epochs = []

    def cut_after_first(self, *args):
        train_epoch(self, *args)
        epochs.append(self.epoch)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(SupernetTrainer, "_train_epoch", cut_after_first)
    assert main(["recipe", path, "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted in stage 'pretrain'" in err and f"nastk recipe {path}" in err
    assert state(run_dir)["pretrain"]["status"] == "running"
    first_epoch = json.loads((run_dir / "pretrain" / "history.json").read_text())
    assert [r["epoch"] for r in first_epoch] == [1]

    # 2. again: the training resumes at epoch 2; then Ctrl-C during the search's 4th trial
    calls: dict[str, list] = {"train_supernet": [], "run_search_config": []}
    for name in calls:
        real = getattr(recipe_cmd, name)

        def recording(config, *, _name=name, _real=real, **kwargs):
            calls[_name].append(kwargs["resume"])
            return _real(config, **kwargs)

        monkeypatch.setattr(recipe_cmd, name, recording)
    evaluate = WeightSharingEvaluator.evaluate
    evaluated = []

    def cut_at_fourth(self, arch, checkpoint=None):
        if len(evaluated) == 3:
            evaluated.append(None)
            raise KeyboardInterrupt
        evaluated.append(arch.key)
        return evaluate(self, arch, checkpoint)

    monkeypatch.setattr(WeightSharingEvaluator, "evaluate", cut_at_fourth)
    assert main(["recipe", path, "--no-progress"]) == 130
    assert "interrupted in stage 'search'" in capsys.readouterr().err
    assert calls == {"train_supernet": [True], "run_search_config": [False]}
    assert epochs == [1, 2]  # the first epoch was not trained again
    history = json.loads((run_dir / "pretrain" / "history.json").read_text())
    assert history[0] == first_epoch[0] and [r["epoch"] for r in history] == [1, 2]
    assert state(run_dir)["pretrain"]["status"] == "done"
    assert state(run_dir)["search"]["status"] == "running"
    done_before = [t.arch.key for t in open_run(run_dir / "search").finished]
    assert done_before == evaluated[:3]

    # a cut-off stage whose config changed: the command refuses to continue it, the recipe says
    # how to start it afresh
    changed = small_recipe(run_dir)
    changed["stages"][1]["config"]["strategy"] = "evolution"
    assert main(["recipe", write(tmp_path / "changed.yaml", changed), "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "the config differs" in err and "pass `--redo search`" in err
    assert len(open_run(run_dir / "search").finished) == 3

    # 3. again, until the search: the pretraining is skipped, the search resumes from its store
    evaluated.clear()
    monkeypatch.setattr(WeightSharingEvaluator, "evaluate",
                        lambda self, arch, checkpoint=None: (evaluated.append(arch.key),
                                                             evaluate(self, arch, checkpoint))[1])
    assert main(["recipe", path, "--no-progress", "--until", "search"]) == 0
    out = capsys.readouterr()
    assert "stage pretrain: done (skipped)" in out.err and "not run" in out.out
    assert calls == {"train_supernet": [True], "run_search_config": [False, True, True]}
    finished = open_run(run_dir / "search").finished
    assert len(finished) == 8 and [t.arch.key for t in finished][:3] == done_before
    assert len(evaluated) == 5 and not set(evaluated) & set(done_before)
    assert "best" not in state(run_dir)

    # 4. only the export, from the recorded outputs
    assert main(["recipe", path, "--no-progress", "--only", "best"]) == 0
    assert calls == {"train_supernet": [True], "run_search_config": [False, True, True]}
    best = state(run_dir)["search"]["outputs"]["best_trial"]
    assert json.loads((run_dir / "best" / "arch.json").read_text())["trial"] == best
    assert state(run_dir)["best"]["sessions"] == 1 and state(run_dir)["search"]["sessions"] == 3


def _unknown_stage(d):
    d["stages"][1]["config"]["evaluator"]["supernet"]["checkpoint"] = "${pretrian.checkpoint}"
    return ["stages.sample.config.evaluator.supernet.checkpoint: ${pretrian.checkpoint}: no "
            "stage named 'pretrian' (stages before 'sample': pretrain"]


def _later_stage(d):
    d["stages"][2]["run"] = "${search.run_dir}"
    return ["stages.filter.run: ${search.run_dir}: stage 'search' runs after 'filter'"]


def _unknown_output(d):
    d["stages"][3]["config"]["path_filter"]["file"] = "${filter.path}"
    return ["stages.finetune.config.path_filter.file: ${filter.path}: stage 'filter' "
            "(path_filter_fit) has no output 'path'; its outputs: file, tau"]


def _itself(d):
    d["stages"][0]["config"] = {"training": {"init": {"from": "${pretrain.checkpoint}"}}}
    return ["stage 'pretrain' is this stage"]


def _bad_config_deep(d):
    d["stages"][4]["config"]["budget"] = {"trials": -3}
    d["stages"][3]["config"]["training"]["epochs"] = 0
    return ["detofa.yaml: stages.finetune.config: training.epochs: Input should be greater "
            "than or equal to 1", "detofa.yaml: stages.search.config: budget.trials: Input "
            "should be greater than 0 (got -3)"]


def _bad_strategy_option(d):
    d["stages"][4]["config"]["strategy"]["options"]["population"] = 1
    return ["stages.search.config: strategy.options: invalid options for strategy 'nsga2'",
            "strategy.options.population"]


def _export_of_a_supernet(d):
    d["stages"][5]["run"] = "${finetune.run_dir}"
    return ["stages.export.run: ${finetune.run_dir}: a export stage reads a search run, and "
            "stage 'finetune' is a supernet_train stage"]


def _run_dir_in_stage(d):
    d["stages"][1]["config"]["run_dir"] = "elsewhere"
    return ["stages.sample.config: run_dir: the recipe runs every stage in run_dir/<stage name>"]


@pytest.mark.parametrize("mutate", [_unknown_stage, _later_stage, _unknown_output, _itself,
                                    _bad_config_deep, _bad_strategy_option,
                                    _export_of_a_supernet, _run_dir_in_stage])
def test_a_bad_recipe_fails_before_any_stage_runs(tmp_path, monkeypatch, capsys, no_commands,
                                                  mutate):
    monkeypatch.chdir(tmp_path)
    data = chain(Path("runs") / "detofa")
    expected = mutate(data)
    assert main(["recipe", write(tmp_path / "detofa.yaml", data), "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    for text in expected:
        assert text in err
    assert not (tmp_path / "runs").exists()
    assert no_commands == []


def test_recipe_flags_and_lock(tmp_path, capsys, no_commands):
    run_dir = tmp_path / "r"
    path = write(tmp_path / "r.yaml", small_recipe(run_dir))
    assert main(["recipe", path, "--until", "nope"]) == 2
    assert "--until nope: the recipe has no such stage; its stages: pretrain, search, best" in (
        capsys.readouterr().err)
    run_dir.mkdir()
    with lock_run_dir(run_dir):  # one live process per recipe
        assert main(["recipe", path, "--no-progress"]) == 2
    assert "is in use" in capsys.readouterr().err
    assert no_commands == []
    bad = copy.deepcopy(small_recipe(run_dir))
    bad["defaults"]["bogus"] = 1
    assert main(["recipe", write(tmp_path / "b.yaml", bad)]) == 2
    assert "defaults: unknown fields ['bogus']" in capsys.readouterr().err
