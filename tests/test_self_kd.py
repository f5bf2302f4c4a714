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


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    with torch.no_grad():
        m[1].running_mean.fill_(0.25)
        m[1].running_var.fill_(4.0)
    return m


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_teachers_mode_is_honoured(mode):
    kd = SelfKD(SelfKDConfig(teacher_mode=mode), Objective(metric="score"))
    kd.end_epoch(1, 1.0, bn_net())
    teacher = kd.teacher
    x = torch.randn(16, 2)
    before = teacher[1].running_mean.clone()
    out = kd.teacher_outputs(x)
    with torch.no_grad():
        z = teacher[0](x)
        bn = teacher[1]
        if mode == "train":  # SalNAS: batch statistics (biased variance), running ones updated
            mean, var = z.mean(0), z.var(0, unbiased=False)
            expected = (z - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
            assert not torch.equal(bn.running_mean, before)
            torch.testing.assert_close(bn.running_mean, 0.9 * before + 0.1 * mean)
        else:
            expected = (z - 0.25) / torch.sqrt(torch.tensor(4.0) + bn.eps) * bn.weight + bn.bias
            assert torch.equal(bn.running_mean, before)
    torch.testing.assert_close(out, expected)  # no dropout in either mode
    assert teacher[1].training == (mode == "train") and not teacher[2].training
    assert not out.requires_grad


def test_composite_score_and_its_improvement_rule():
    from nastk.core.errors import NastkError
    from nastk.training.self_kd import composite_score

    def sig(v):
        return 1 / (1 + np.exp(-v))

    m1 = {"cc": 0.80, "kld": 0.30, "nss": 2.0, "sim": 0.70, "auc_judd": 0.85}
    m2 = {"cc": 0.82, "kld": 0.45, "nss": 1.9, "sim": 0.69, "auc_judd": 0.85}  # CC up, rest down
    m3 = {"cc": 0.81, "kld": 0.25, "nss": 2.1, "sim": 0.72, "auc_judd": 0.86}
    hand = [(1 - m["cc"]) + m["kld"] + (1 - sig(m["nss"])) + (1 - m["sim"]) + (1 - m["auc_judd"])
            for m in (m1, m2, m3)]
    assert [composite_score(m) for m in (m1, m2, m3)] == pytest.approx(hand)
    assert hand[1] > hand[0] > hand[2]
    composite = SelfKD(SelfKDConfig(score="composite"), Objective(metric="cc"))
    by_cc = SelfKD(SelfKDConfig(), Objective(metric="cc"))
    model = nn.Linear(2, 1)
    assert [composite.end_epoch(e, composite.score_of(m), model)
            for e, m in enumerate((m1, m2, m3), 1)] == [True, False, True]  # lower is better
    assert [by_cc.end_epoch(e, by_cc.score_of(m), model)
            for e, m in enumerate((m1, m2, m3), 1)] == [True, True, False]
    assert composite.best == pytest.approx(hand[2]) and by_cc.best == 0.82
    with pytest.raises(NastkError, match="needs the metrics"):
        composite.score_of({"cc": 0.5})
    with pytest.raises(NastkError, match="judges epochs by 'cc'"):
        by_cc.score_of({"kld": 0.5})


def test_supernet_self_kd_judges_the_largest_by_the_composite_score(tmp_path, monkeypatch):
    from nastk.training.self_kd import composite_score

    monkeypatch.chdir(tmp_path)
    cfg = {"name": "kd", "run_dir": "runs/kd", "seed": 0,
           "space": {"name": "salnas", "options": {"stages": [8, 16], "width_offsets": [0],
                                                   "depths": [1], "expands": [3],
                                                   "kernels": [3], "out_channels": 8}},
           "task": {"name": "saliency",
                    "options": {"dataset": "synthetic", "n_samples": 48, "size": [32, 32]}},
           "training": {"epochs": 2, "batch_size": 16, "n_random": 0, "bn_calib_batches": 1,
                        "num_threads": 1, "inplace_distill": False,
                        "self_kd": {"alpha": 0.5, "score": "composite",
                                    "teacher_mode": "train"}}}
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", "kd.yaml", "--no-progress"]) == 0
    history = json.loads((tmp_path / "runs/kd/history.json").read_text())
    scores = [h["val_self_kd_score_largest"] for h in history]
    assert all(np.isfinite(scores)) and history[0]["self_kd_teacher_epochs"] == 1
    expected = 1 + int(scores[1] < scores[0])  # lower is better
    assert history[1]["self_kd_teacher_epochs"] == expected
    assert composite_score({"cc": 1, "kld": 0, "nss": 50, "sim": 1, "auc_judd": 1}) == \
        pytest.approx(0, abs=1e-12)
