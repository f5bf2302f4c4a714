"""Self-KD: the teacher is the mean of the improving epochs' weights and gets no gradient; the
blended target is the task's; plain and supernet training use it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from nastk.cli.main import main
from nastk.core.objective import Objective
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.training.self_kd import SelfKD, SelfKDConfig, WeightAverage

TINY_CNN = {"stages": 2, "depths": [1], "widths": [8, 16], "kernels": [3], "expansions": [1]}


def net(weight: float, bias: float, mean: float, steps: int) -> nn.Module:
    m = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        m[0].weight.fill_(weight)
        m[0].bias.fill_(bias)
        m[1].running_mean.fill_(mean)
        m[1].num_batches_tracked.fill_(steps)
    return m


def test_the_teacher_is_the_mean_of_the_improving_epochs_weights():
    kd = SelfKD(SelfKDConfig(alpha=0.5), Objective(metric="score"))
    snapshots = [net(1.0, 0.0, 2.0, 10), net(5.0, 1.0, 4.0, 20), net(3.0, 2.0, 8.0, 30),
                 net(9.0, 9.0, 9.0, 40)]
    improved = [kd.end_epoch(e, score, m) for e, (score, m) in
                enumerate(zip([0.5, 0.4, 0.6, 0.6], snapshots, strict=True), start=1)]
    assert improved == [True, False, True, False]  # 0.4 and a tie do not improve
    assert kd.improved_epochs == [1, 3]
    teacher = kd.teacher
    assert float(teacher[0].weight[0, 0]) == pytest.approx((1.0 + 3.0) / 2)
    assert float(teacher[0].bias[0]) == pytest.approx((0.0 + 2.0) / 2)
    assert float(teacher[1].running_mean[0]) == pytest.approx((2.0 + 8.0) / 2)  # buffers too
    assert int(teacher[1].num_batches_tracked) == 30  # integers: the latest snapshot's
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    minimising = SelfKD(SelfKDConfig(), Objective(metric="loss", direction="min"))
    assert [minimising.end_epoch(e, s, snapshots[0]) for e, s in enumerate([3, 2, 4], 1)] == \
        [True, True, False]


def test_weight_average_survives_a_checkpoint_round_trip(tmp_path):
    avg = WeightAverage()
    avg.add(net(1.0, 0.0, 0.0, 1))
    avg.add(net(3.0, 0.0, 0.0, 2))
    torch.save(avg.state_dict(), tmp_path / "a.pt")
    again = WeightAverage()
    again.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True), net(0, 0, 0, 0))
    assert again.n == 2 and float(again.model[0].weight[0, 0]) == pytest.approx(2.0)


def test_blended_classification_target_and_no_gradient_into_the_teacher():
    task = ClassificationTask(dataset="synthetic", n_samples=60, image_size=8, num_classes=3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    kd = SelfKD(SelfKDConfig(alpha=0.25), Objective(metric="accuracy"))
    kd.end_epoch(1, 0.5, model)
    x = torch.randn(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 1])
    target = kd.blend(task, y, x, progress=0.3)
    with torch.no_grad():
        expected = 0.25 * nn.functional.one_hot(y, 3) + 0.75 * kd.teacher(x).softmax(1)
    torch.testing.assert_close(target, expected)
    loss = task.loss(model(x), target)
    loss.backward()
    assert model[1].weight.grad is not None
    assert all(p.grad is None for p in kd.teacher.parameters())


def test_progressive_schedule_grows_the_teachers_share_linearly():
    cfg = SelfKDConfig(alpha=0.4, schedule="progressive")
    assert [cfg.ground_truth_share(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.7, 0.4])
    assert SelfKDConfig(alpha=0.4).ground_truth_share(0.9) == 0.4


def test_train_evaluator_learns_from_its_own_average():
    task = ClassificationTask(dataset="synthetic", n_samples=120, image_size=8)
    space = SmallCNNSpace(**TINY_CNN)
    arch = space.sample(np.random.default_rng(0))
    base = TrainConfig(epochs=3, batch_size=32, latency=False)
    plain = TrainEvaluator(task, space, base).evaluate(arch)
    kd = TrainEvaluator(task, space, base.model_copy(
        update={"self_kd": SelfKDConfig(alpha=0.5)})).evaluate(arch)
    assert plain.ok and kd.ok
    assert kd.info["self_kd_teacher_epochs"][0] == 1  # the first epoch always improves
    assert kd.metrics["train_loss"] != plain.metrics["train_loss"]  # the target changed
    with pytest.raises(NotImplementedError, match="blend_targets"):
        from nastk.task.contract import Task

        Task.blend_targets(task, None, None, 0.5)


def test_supernet_training_with_self_kd_keeps_its_teacher_in_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"name": "kd", "run_dir": "runs/kd", "plugins": ["toy_supernet"],
           "space": "toy_supernet",
           "task": {"name": "classification",
                    "options": {"dataset": "synthetic", "n_samples": 120, "image_size": 16,
                                "num_classes": 4}},
           "training": {"epochs": 2, "batch_size": 32, "n_random": 1, "bn_calib_batches": 1,
                        "num_threads": 1, "self_kd": {"alpha": 0.5}}}
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", "kd.yaml", "--no-progress"]) == 0
    history = json.loads((tmp_path / "runs/kd/history.json").read_text())
    assert history[0]["self_kd_teacher_epochs"] == 1
    state = torch.load(tmp_path / "runs/kd/supernet.pt", weights_only=True)
    assert state["self_kd"]["n"] == history[-1]["self_kd_teacher_epochs"]
    # resuming restores the teacher: a finished run resumes as a no-op with the same state
    assert main(["supernet", "train", "kd.yaml", "--resume", "--no-progress"]) == 0
    again = torch.load(tmp_path / "runs/kd/supernet.pt", weights_only=True)
    assert again["self_kd"]["n"] == state["self_kd"]["n"]
    for k, v in state["self_kd"]["weights"].items():
        assert torch.equal(again["self_kd"]["weights"][k], v)
