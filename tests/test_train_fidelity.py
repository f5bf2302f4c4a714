"""The train evaluator as a scheduler drives it (TrainEvaluator.fidelity, evaluate_at): training
stopped at a resource and continued from its saved state is, bit for bit, the training run
straight to the higher resource, and at the full budget it is evaluate()."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.scheduling.fidelity import Fidelity, MultiFidelityEvaluator, fidelity_of
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.training.callbacks import TrainCallback
from nastk.training.schedule import cosine_lr
from nastk.training.self_kd import SelfKDConfig

TINY_CNN = {"stages": 2, "depths": [1], "widths": [8, 16], "kernels": [3], "expansions": [1]}
# 48 training samples: 3 batches of 16 per epoch (the sampler draws once more from the
# generator when an epoch's loader is exhausted), or 5 of 10 (the last one of 8)
BASE = {"epochs": 5, "batch_size": 16, "lr": 0.01, "latency": False}


class _NoisyLoss(ClassificationTask):
    """The classification loss times a factor drawn from the global torch RNG at every step
    (as dropout draws): continuing must restore that RNG."""

    def loss(self, outputs, targets):
        return super().loss(outputs, targets) * (1.0 + torch.rand(()))


def _evaluator(task_cls: type[ClassificationTask] = ClassificationTask,
               **train: object) -> TrainEvaluator:
    task = task_cls(dataset="synthetic", n_samples=80, image_size=8, num_classes=3)
    space = SmallCNNSpace(**TINY_CNN)
    return TrainEvaluator(task, space, TrainConfig(**{**BASE, **train}), seed=7)


def _arch(evaluator: TrainEvaluator, i: int = 1):
    return evaluator.space.sample(np.random.default_rng(i))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _assert_same_result(a, b) -> None:
    assert a.ok and b.ok, (a.error, b.error)
    assert a.metrics == b.metrics  # every metric bit for bit, train_loss included
    assert a.costs == b.costs
    assert a.info["steps"] == b.info["steps"] and a.info["seed"] == b.info["seed"]


def test_the_fidelity_is_epochs_or_steps_and_resumable():
    ev = _evaluator()
    assert ev.fidelity == Fidelity(name="epochs", max=5, min=1, resumable=True)
    assert _evaluator(steps=11).fidelity == Fidelity(name="steps", max=11, min=1,
                                                     resumable=True)
    assert isinstance(ev, MultiFidelityEvaluator)
    assert fidelity_of(ev) == ev.fidelity


@pytest.mark.parametrize(("train", "low", "high"), [
    ({}, 2, 5),                                                        # adam, epochs
    ({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 10,
      "lr_schedule": "poly"}, 2, 5),                                   # sgd + momentum
    ({"steps": 11, "grad_clip": 0.5}, 4, 11),                          # steps, stop mid-epoch
    ({"polyak": 0.9, "steps": 13, "batch_size": 10}, 7, 13),           # polyak, mid-epoch
])
def test_continuing_from_the_state_is_training_straight_through(tmp_path, train, low, high):
    ev = _evaluator(_NoisyLoss, **train)
    arch = _arch(ev)
    state = tmp_path / "state.pt"
    first = ev.evaluate_at(arch, low, state_out=state)
    assert first.ok, first.error
    assert first.info["resource"] == float(low)
    resumed = ev.evaluate_at(arch, high, state=state, checkpoint=tmp_path / "resumed.pt")
    straight = ev.evaluate_at(arch, high, checkpoint=tmp_path / "straight.pt")
    _assert_same_result(resumed, straight)
    _assert_same(_weights(tmp_path / "resumed.pt"), _weights(tmp_path / "straight.pt"))
    # at the full budget, evaluate_at is evaluate
    plain = ev.evaluate(arch, checkpoint=tmp_path / "plain.pt")
    _assert_same_result(straight, plain)
    assert "resource" not in plain.info
    _assert_same(_weights(tmp_path / "straight.pt"), _weights(tmp_path / "plain.pt"))
    # the lower rung is the start of the full training, not a shorter training: its weights
    # differ from a full training's, and its rate is the full schedule's at that point
    saved = torch.load(state, weights_only=True)
    per_epoch = saved["per_epoch"]
    step = low if "steps" in train else low * per_epoch
    assert saved["step"] == first.info["steps"] == step
    if train.get("lr_schedule", "cosine") == "cosine":
        total = train.get("steps", 5 * per_epoch)
        lr = saved["optimizer"]["param_groups"][0]["lr"]
        assert lr == pytest.approx(cosine_lr(0.01, step / total), rel=1e-9)
        assert lr > 1e-4  # a schedule over the rung alone would have reached 0


def test_a_chain_of_rungs_is_the_straight_training(tmp_path):
    ev = _evaluator(optimizer="sgd", momentum=0.9)
    arch = _arch(ev, 3)
    rung1, rung2 = tmp_path / "r1.pt", tmp_path / "r2.pt"
    one = ev.evaluate_at(arch, 1, state_out=rung1)
    two = ev.evaluate_at(arch, 2, state=rung1, state_out=rung2)
    four = ev.evaluate_at(arch, 4, state=rung2, checkpoint=tmp_path / "chain.pt")
    assert one.ok and two.ok and four.ok
    _assert_same_result(two, ev.evaluate_at(arch, 2))
    straight = ev.evaluate_at(arch, 4, checkpoint=tmp_path / "straight.pt")
    _assert_same_result(four, straight)
    assert four.info["resource"] == 4.0 and four.info["steps"] == 4 * 3
    _assert_same(_weights(tmp_path / "chain.pt"), _weights(tmp_path / "straight.pt"))
    # a state that does not exist yet: the training starts from scratch
    fresh = ev.evaluate_at(arch, 4, state=tmp_path / "missing.pt")
    _assert_same_result(fresh, straight)


@pytest.mark.parametrize("resource", [0, 0.5, 6, math.inf, math.nan])
def test_a_resource_outside_the_fidelity_fails_naming_the_range(resource):
    ev = _evaluator()
    result = ev.evaluate_at(_arch(ev), resource)
    assert not result.ok
    assert "outside [1, 5]" in result.error and "epochs" in result.error


def test_a_step_resource_outside_the_fidelity_fails():
    ev = _evaluator(steps=11)
    result = ev.evaluate_at(_arch(ev), 12)
    assert not result.ok and "12 steps outside [1, 11]" in result.error


def test_the_state_is_a_weights_only_file(tmp_path):
    ev = _evaluator(polyak=0.9)
    arch = _arch(ev)
    state = tmp_path / "state.pt"
    assert ev.evaluate_at(arch, 2, state_out=state).ok
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    saved = torch.load(state, weights_only=True)
    assert saved["format"] == "nastk.train_state" and saved["arch"] == arch.key
    assert saved["step"] == 6 and saved["total"] == 15 and saved["per_epoch"] == 3
    assert set(saved["model"]) == set(ev.task.build_model(ev.space, arch).state_dict())
    assert saved["polyak"] is not None and len(saved["recent"]["total"]) == 3
    assert isinstance(saved["generator"], torch.Tensor) and saved["generator"].dtype == \
        torch.uint8


def test_a_state_that_does_not_fit_fails(tmp_path):
    ev = _evaluator()
    arch, other = _arch(ev, 1), _arch(ev, 2)
    assert arch.key != other.key
    state = tmp_path / "state.pt"
    assert ev.evaluate_at(arch, 3, state_out=state).ok
    wrong_arch = ev.evaluate_at(other, 4, state=state)
    assert not wrong_arch.ok and "another architecture" in wrong_arch.error
    lower = ev.evaluate_at(arch, 2, state=state)
    assert not lower.ok and "beyond the resource" in lower.error
    same = ev.evaluate_at(arch, 3, state=state)  # nothing left to train: the same result
    _assert_same_result(same, ev.evaluate_at(arch, 3))


def test_self_kd_below_the_full_budget_is_refused(tmp_path):
    ev = _evaluator(self_kd=SelfKDConfig(alpha=0.5), epochs=2)
    result = ev.evaluate_at(_arch(ev), 1, state_out=tmp_path / "s.pt")
    assert not result.ok
    assert "cannot stop and resume Self-KD training" in result.error
    assert "teacher" in result.error
    assert not (tmp_path / "s.pt").exists()


class _Epochs(TrainCallback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, epoch, model, metrics) -> bool:
        self.seen.append(epoch)
        return False


def test_callbacks_count_epochs_from_the_start_of_the_full_training(tmp_path):
    ev = _evaluator()
    arch = _arch(ev)
    state = tmp_path / "s.pt"
    first, second = _Epochs(), _Epochs()
    assert ev.evaluate_at(arch, 2, state_out=state, callbacks=[first]).ok
    resumed = ev.evaluate_at(arch, 5, state=state, callbacks=[second])
    assert first.seen == [1, 2] and second.seen == [3, 4, 5]
    # callbacks do not change the training
    _assert_same_result(resumed, ev.evaluate(arch))


def test_nas_segm_training_continues_exactly_and_its_decoder_stage_runs_once(tmp_path,
                                                                               monkeypatch):
    from nastk.search_spaces.nas_segm import NasSegmSpace
    from nastk.tasks.segmentation import SegmentationTask
    from nastk.training import inner_loop

    task = SegmentationTask(n_samples=40, size=16, num_classes=3, seed=0)
    space = NasSegmSpace(stem_channels=4, encoder_widths=[4, 6, 8], encoder_depths=[1, 1, 1],
                         encoder_expand=2, decoder_channels=8, agg_channels=8, n_layers=2,
                         n_stride_layers=0)
    config = TrainConfig(batch_size=8, latency=False, steps=5, polyak=0.9, aux_loss=0.15,
                         decoder_stage={"epochs": 1})
    ev = TrainEvaluator(task, space, config, seed=0)
    arch = space.sample(np.random.default_rng(0))
    stages: list[int] = []
    real = inner_loop.train_decoder_stage

    def spy(*args, **kwargs):
        stages.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("nastk.evaluation.train.train_decoder_stage", spy)
    state = tmp_path / "s.pt"
    assert ev.evaluate_at(arch, 2, state_out=state).ok
    assert stages == [1]
    assert torch.load(state, weights_only=True)["aux"] is not None
    resumed = ev.evaluate_at(arch, 5, state=state, checkpoint=tmp_path / "resumed.pt")
    assert stages == [1]  # not again when continuing
    straight = ev.evaluate(arch, checkpoint=tmp_path / "straight.pt")
    _assert_same_result(resumed, straight)
    _assert_same(_weights(tmp_path / "resumed.pt"), _weights(tmp_path / "straight.pt"))
