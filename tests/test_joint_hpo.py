"""Hyperparameter dimensions (SearchSpace.hyperparameters): the train evaluator trains each
candidate with its own learning rate and weight decay, refuses a dimension that is not a
training setting before the first trial, and leaves spaces without such dimensions exactly as
they were; the conditional small_cnn_flex space (issue 33, item 4)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nastk.evaluation.train as train_mod
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError
from nastk.core.registry import SEARCH_SPACES, instantiate
from nastk.evaluation.hyperparameters import hyperparameter_fields
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.pipelines.search import run_search_config
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.search_spaces.small_cnn_flex import SmallCNNFlexSpace
from nastk.space import Float
from nastk.space.architecture import Architecture
from nastk.space.cost_range import CostRangeSpace
from nastk.space.search_space import SearchSpace
from nastk.tasks.classification import ClassificationTask

TINY_FLEX = {"max_depth": 2, "widths": [8], "kernels": [3], "expansions": [1], "stem_width": 8}
BASE = {"epochs": 2, "batch_size": 16, "lr": 0.005, "latency": False}


def _task() -> ClassificationTask:
    return ClassificationTask(dataset="synthetic", n_samples=64, image_size=8, num_classes=3)


def _arch(lr: float, wd: float, depth: int = 2) -> Architecture:
    values = {"depth": depth, "width_1": 8, "kernel_1": 3, "expand_1": 1,
              "lr": lr, "weight_decay": wd}
    if depth >= 2:
        values.update(width_2=8, kernel_2=3, expand_2=1)
    return Architecture(values)


class _Spy:
    """Records the learning rate and each parameter group's weight decay of every optimiser
    the train evaluator makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[float, list[float]]] = []
        real = train_mod.make_optimizer

        def spy(groups, name, *, lr, **kwargs):
            opt = real(groups, name, lr=lr, **kwargs)
            self.seen.append((lr, [g["weight_decay"] for g in opt.param_groups]))
            return opt

        monkeypatch.setattr(train_mod, "make_optimizer", spy)


def test_each_candidate_trains_with_its_learning_rate_and_weight_decay(monkeypatch, tmp_path):
    spy = _Spy(monkeypatch)
    ev = TrainEvaluator(_task(), SmallCNNFlexSpace(**TINY_FLEX), TrainConfig(**BASE), seed=3)
    assert ev.hyperparameters == ("lr", "weight_decay")
    fast, slow = _arch(0.03, 1e-3), _arch(1e-4, 1e-6)
    r_fast = ev.evaluate(fast, checkpoint=tmp_path / "fast.pt")
    r_slow = ev.evaluate(slow, checkpoint=tmp_path / "slow.pt")
    assert r_fast.ok and r_slow.ok, (r_fast.error, r_slow.error)
    assert spy.seen == [(0.03, [1e-3]), (1e-4, [1e-6])]
    assert r_fast.info["hyperparameters"] == {"lr": 0.03, "weight_decay": 1e-3}
    assert ev.config.lr == 0.005 and ev.config.weight_decay == 0.0  # the run's, untouched
    # the huge learning rate moves the weights far more than the tiny one
    assert r_fast.metrics["train_loss"] != r_slow.metrics["train_loss"]

    # training with the architecture's values is, bit for bit, training with a TrainConfig
    # that holds them (same architecture key, so the same weight seed and data order)
    plain_space = SmallCNNFlexSpace(**TINY_FLEX)
    plain_space.hyperparameters = ()
    plain = TrainEvaluator(_task(), plain_space,
                           TrainConfig(**{**BASE, "lr": 0.03, "weight_decay": 1e-3}), seed=3)
    assert plain.hyperparameters == ()
    r_plain = plain.evaluate(fast, checkpoint=tmp_path / "plain.pt")
    assert r_plain.metrics == r_fast.metrics and r_plain.costs == r_fast.costs
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("fast.pt", "plain.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert spy.seen[-1] == (0.03, [1e-3])


def test_config_for_validates_and_keeps_the_run_settings():
    ev = TrainEvaluator(_task(), SmallCNNFlexSpace(**TINY_FLEX),
                        TrainConfig(**{**BASE, "optimizer": "sgd", "momentum": 0.5}))
    cfg = ev.config_for(_arch(0.01, 1e-4, depth=1))
    assert isinstance(cfg, TrainConfig) and cfg is not ev.config
    assert (cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.momentum, cfg.epochs) == (
        0.01, 1e-4, "sgd", 0.5, 2)
    assert cfg.model_dump() == TrainConfig(**{**BASE, "optimizer": "sgd", "momentum": 0.5,
                                              "lr": 0.01, "weight_decay": 1e-4}).model_dump()


def test_a_wrapped_space_keeps_its_base_hyperparameters():
    base = SmallCNNFlexSpace(**TINY_FLEX)
    wrapped = CostRangeSpace(base, lambda arch: {"flops": 1.0}, {"flops": (None, 2.0)})
    ev = TrainEvaluator(_task(), wrapped, TrainConfig(**BASE))
    assert ev.hyperparameters == ("lr", "weight_decay")


class _Declares(SmallCNNFlexSpace):
    """small_cnn_flex with one more real dimension and the hyperparameters given."""

    def __init__(self, extra: Float, names: tuple[str, ...]) -> None:
        super().__init__(**TINY_FLEX)
        SearchSpace.__init__(self, [*self.dimensions, extra], name="declares")
        self.hyperparameters = names


@pytest.mark.parametrize(("extra", "names", "message"), [
    (Float("learning_rate", 1e-4, 1e-1, log=True), ("lr", "learning_rate"),
     r"dimension 'learning_rate' as a hyperparameter, but 'learning_rate' is not a training "
     r"setting; .*TrainConfig fields\): batch_size, optimizer, lr, "),
    (Float("epochs", 1, 5), ("epochs",),
     r"dimension 'epochs' as a hyperparameter, but 'epochs' is set once for the whole run"),
    (Float("momentum", 0.5, 2.0), ("momentum",),
     r"dimension 'momentum' as a hyperparameter, but its value 2\.0 is not a valid training "
     r"setting: evaluator\.train\.momentum: Input should be less than or equal to 1"),
    (Float("momentum", 0.5, 0.9), ("momentum", "nesterov"),
     r"declares hyperparameter 'nesterov', but it has no dimension 'nesterov'"),
])
def test_a_bad_hyperparameter_dimension_is_refused_by_name(extra, names, message):
    with pytest.raises(ConfigError, match=message):
        TrainEvaluator(_task(), _Declares(extra, names), TrainConfig(**BASE),
                       where="evaluator.train")
    fields = hyperparameter_fields(TrainConfig)
    assert "lr" in fields and "device" not in fields


def test_a_bad_hyperparameter_dimension_stops_the_run_before_its_first_trial(
        tmp_path, monkeypatch):
    (tmp_path / "bad_hp_plugin.py").write_text(textwrap.dedent("""
        from nastk.core.registry import SEARCH_SPACES
        from nastk.search_spaces.small_cnn_flex import SmallCNNFlexSpace

        class BadHP(SmallCNNFlexSpace):
            name = "bad_hp_flex"

            def __init__(self, **options):
                super().__init__(**options)
                self.hyperparameters = ("lr", "width_1")

        if "bad_hp_flex" not in SEARCH_SPACES:
            SEARCH_SPACES.register("bad_hp_flex", BadHP)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    trained = []
    monkeypatch.setattr(TrainEvaluator, "_evaluate",
                        lambda *a, **k: trained.append(1))  # never reached
    run_dir = tmp_path / "run"
    config = parse_config({
        "name": "bad", "run_dir": str(run_dir), "plugins": ["bad_hp_plugin"],
        "space": {"name": "bad_hp_flex", "options": TINY_FLEX},
        "task": {"name": "classification",
                 "options": {"dataset": "synthetic", "n_samples": 64, "image_size": 8,
                             "num_classes": 3}},
        "strategy": {"name": "random"},
        "evaluator": {"kind": "train", "train": BASE}, "budget": {"trials": 2}})
    try:
        with pytest.raises(ConfigError, match=r"evaluator\.train: search space 'bad_hp_flex' "
                                              r"declares dimension 'width_1' as a "
                                              r"hyperparameter.*: batch_size, optimizer, lr"):
            run_search_config(config, progress=False)
    finally:
        if "bad_hp_flex" in SEARCH_SPACES:
            SEARCH_SPACES.unregister("bad_hp_flex")
    assert not trained and not (run_dir / "store.sqlite").exists()


def test_flex_space_layers_exist_only_below_the_depth():
    space = instantiate(SEARCH_SPACES, "small_cnn_flex", {})
    assert isinstance(space, SmallCNNFlexSpace) and space.hyperparameters == (
        "lr", "weight_decay")
    shallow = space.validate({"depth": 1, "width_1": 16, "kernel_1": 5, "expand_1": 2,
                              "lr": 0.001, "weight_decay": 1e-5})
    assert set(shallow) == {"depth", "width_1", "kernel_1", "expand_1", "lr", "weight_decay"}
    with pytest.raises(Exception, match=r"'width_2' is inactive here: it exists only when "
                                        r"depth >= 2 \(depth is 1\)"):
        space.validate({**shallow, "width_2": 8})
    with pytest.raises(Exception, match=r"'lr': 1\.0 not in real numbers in \[0\.0001, 0\.03\]"):
        space.validate({**shallow, "lr": 1.0})
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        depth = arch["depth"]
        for i in range(1, 5):
            assert (f"width_{i}" in arch) == (i <= depth)
            assert (f"kernel_{i}" in arch) == (f"expand_{i}" in arch) == (i <= depth)
        assert 1e-4 <= arch["lr"] <= 3e-2 and 1e-6 <= arch["weight_decay"] <= 1e-2
        child = space.mutate(arch, rng)
        assert space.is_valid(child)
    body = space.build(shallow, 1)
    assert len(body.stages) == 1 and body.out_channels == 16
    assert body(torch.zeros(2, 1, 10, 10)).shape == (2, 16, 10, 10)
    deep = space.sample(np.random.default_rng(3))
    while deep["depth"] < 4:
        deep = space.mutate(deep, rng)
    assert len(space.build(deep, 1).stages) == 4
    # the network ignores the hyperparameters: same parameters for any lr / weight decay
    other = Architecture({**dict(deep), "lr": 0.02, "weight_decay": 0.001})
    n = [sum(p.numel() for p in space.build(a, 1).parameters()) for a in (deep, other)]
    assert n[0] == n[1]
    arch_only = instantiate(SEARCH_SPACES, "small_cnn_flex", {"hyperparameters": False})
    assert arch_only.hyperparameters == () and "lr" not in arch_only.sample(rng)
    assert arch_only.size() == sum(24 ** d for d in range(1, 5))  # 4 x 2 x 3 per block
    with pytest.raises(ConfigError, match=r"lr needs 0 < low < high"):
        instantiate(SEARCH_SPACES, "small_cnn_flex", {"lr": [0.1, 0.01]})


def test_spaces_without_hyperparameters_take_the_unchanged_path(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the hyperparameter path ran for a space without them")

    monkeypatch.setattr(TrainEvaluator, "_evaluate_tuned", refuse)
    config = TrainConfig(**BASE)
    space = SmallCNNSpace(stages=2, depths=[1], widths=[8], kernels=[3], expansions=[1])
    ev = TrainEvaluator(_task(), space, config, seed=1)
    assert ev.hyperparameters == () and ev.config is config
    arch = space.sample(np.random.default_rng(0))
    assert ev.config_for(arch) is config
    seen = []
    real = train_mod.TrainEvaluator._train

    def spy(self, *args, **kwargs):
        seen.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TrainEvaluator, "_train", spy)
    result = ev.evaluate(arch)
    assert result.ok and "hyperparameters" not in result.info
    assert seen == [ev] and seen[0].config is config  # trained by the evaluator itself
    # the arch-only flex space (hyperparameters: false) too
    flex = SmallCNNFlexSpace(**TINY_FLEX, hyperparameters=False)
    ev2 = TrainEvaluator(_task(), flex, config, seed=1)
    assert ev2.hyperparameters == ()
    assert ev2.config_for(flex.sample(np.random.default_rng(0))) is config


def test_joint_search_example_parses():
    from nastk.config.schema import load_config
    config = load_config(Path(__file__).resolve().parent.parent / "examples"
                         / "joint_search.yaml")
    assert config.space.name == "small_cnn_flex" and config.strategy.name == "evolution"
