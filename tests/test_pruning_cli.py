"""DetOFA from the command line: train a supernet, search it by weight sharing, fit a path filter
on that run (`nastk path-filter fit`), and train a supernet on the paths it keeps
(`path_filter:` in the supernet config)."""

import pytest
import yaml
from conftest import all_architectures

from nastk.cli.main import main
from nastk.config.compose import build_supernet_model
from nastk.config.schema import SupernetConfig, parse_config
from nastk.core.errors import ConfigError
from nastk.prediction.path_filter import (
    PathFilterUse,
    load_path_filter,
    supernet_sampler_factory,
)
from nastk.training.supernet import SupernetTrainer

TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 300, "image_size": 16,
                    "num_classes": 4}}
TRAINING = {"epochs": 1, "batch_size": 32, "n_random": 2, "bn_calib_batches": 2,
            "num_threads": 1}


def supernet_cfg(tmp, name, **extra):
    return {"name": name, "run_dir": str(tmp / name), "plugins": ["toy_supernet"],
            "space": "toy_supernet", "task": TASK, "training": TRAINING, **extra}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detofa")
    path = tmp / "supernet.yaml"
    path.write_text(yaml.safe_dump(supernet_cfg(tmp, "pretrain")))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    search = {"name": "ws", "run_dir": str(tmp / "search"), "plugins": ["toy_supernet"],
              "space": "toy_supernet", "task": TASK, "strategy": "random",
              "objective": {"costs": ["flops"]},
              "evaluator": {"kind": "supernet",
                            "supernet": {"checkpoint": str(tmp / "pretrain" / "supernet.pt"),
                                         "calib_batches": 2}},
              "budget": {"trials": 30}}
    spath = tmp / "search.yaml"
    spath.write_text(yaml.safe_dump(search))
    assert main(["search", str(spath), "--no-progress"]) == 0
    return tmp


@pytest.mark.slow
def test_fit_then_train_only_kept_paths(searched, capsys, monkeypatch):
    tmp = searched
    out = tmp / "filter.pt"
    code = main(["path-filter", "fit", str(tmp / "search"), "--out", str(out), "--buckets", "2",
                 "--holdout", "0.25"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.is_file()
    assert "held out 8 of 30 trials" in text and "within flops buckets" in text

    cfg = supernet_cfg(tmp, "pruned",
                       path_filter={"file": str(out), "keep_ratio": 0.3, "n_samples": 40})
    path = tmp / "pruned.yaml"
    path.write_text(yaml.safe_dump(cfg))
    randoms = []  # the random sub-networks of every training step
    subnets = SupernetTrainer._subnets

    def recording(self, sampler, rng):
        nets = subnets(self, sampler, rng)
        randoms.extend(arch for kind, arch in nets if kind == "random")
        return nets

    monkeypatch.setattr(SupernetTrainer, "_subnets", recording)
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    monkeypatch.undo()

    config = parse_config(cfg, "pruned.yaml", SupernetConfig)
    model = build_supernet_model(config)
    sampler = supernet_sampler_factory(config.path_filter, model, seed=config.seed)(model, None)
    assert len(randoms) >= 10
    assert all(sampler.is_kept(a) for a in randoms)
    every = all_architectures(model.space)
    kept_share = sum(sampler.is_kept(a) for a in every) / len(every)
    assert kept_share < 0.6  # the filter really pruned the space
    assert config.identity()["path_filter"]["keep_ratio"] == 0.3


def test_fit_needs_enough_trials_with_the_cost(searched, capsys):
    tmp = searched
    code = main(["path-filter", "fit", str(tmp / "search"), "--out", str(tmp / "x.pt"),
                 "--cost", "latency_ms"])
    err = capsys.readouterr().err
    assert code == 2 and "0 successful trials with a 'latency_ms' cost" in err
    assert "costs recorded: ['flops', 'params']" in err


def test_missing_filter_file_names_the_fix(tmp_path):
    cfg = parse_config(supernet_cfg(tmp_path, "p", path_filter={"file": str(tmp_path / "no.pt")}),
                       "p.yaml", SupernetConfig)
    model = build_supernet_model(cfg)
    with pytest.raises(ConfigError, match="nastk path-filter fit"):
        load_path_filter(cfg.path_filter.file, model.space, supernet=model)
    with pytest.raises(Exception, match="keep_ratio"):
        PathFilterUse(file=tmp_path / "no.pt", keep_ratio=0)


@pytest.mark.slow
def test_search_over_the_pruned_space_proposes_only_kept_paths(searched):
    """DetOFA's last step: a search config's ``path_filter`` makes the strategy search only the
    kept paths (thresholds from the run's seed), and the run records the filter in its
    identity."""
    from nastk.config.compose import build_components
    from nastk.config.schema import SearchConfig
    from nastk.run.record import open_run

    tmp = searched
    out = tmp / "filter_search.pt"
    assert main(["path-filter", "fit", str(tmp / "search"), "--out", str(out),
                 "--buckets", "2"]) == 0
    search = {"name": "pruned_search", "run_dir": str(tmp / "pruned_search"),
              "plugins": ["toy_supernet"], "space": "toy_supernet", "task": TASK,
              "strategy": {"name": "nsga2", "options": {"population": 6}},
              "objective": {"costs": ["flops"]},
              "evaluator": {"kind": "supernet",
                            "supernet": {"checkpoint": str(tmp / "pretrain" / "supernet.pt"),
                                         "calib_batches": 2}},
              "path_filter": {"file": str(out), "keep_ratio": 0.3, "n_samples": 60},
              "budget": {"trials": 12}}
    spath = tmp / "pruned_search.yaml"
    spath.write_text(yaml.safe_dump(search))
    assert main(["search", str(spath), "--no-progress"]) == 0
    config = parse_config(search, "pruned_search.yaml", SearchConfig)
    space = build_components(config, check=False).space
    every = all_architectures(space.base)
    kept = [a for a in every if space.is_kept(a)]
    assert 0 < len(kept) < 0.6 * len(every)
    trials = open_run(tmp / "pruned_search").trials
    assert len(trials) == min(12, len(kept))
    assert all(space.is_kept(t.arch) for t in trials)
    assert config.identity()["path_filter"]["keep_ratio"] == 0.3

    bad = parse_config({**search, "run_dir": str(tmp / "x"),
                        "path_filter": {"file": str(tmp / "missing.pt")}}, "s.yaml",
                       SearchConfig)
    with pytest.raises(ConfigError, match="nastk path-filter fit"):
        build_components(bad, check=False)
