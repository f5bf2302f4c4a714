"""The pieces every training loop shares (nastk.training.optim, schedule, step), each checked
against plain torch code: the parameter groups and optimiser, the two arithmetics of the cosine
schedule, an optimizer step with clipping, the divergence check, and the train evaluator's
whole loop."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from nastk.core.errors import NastkError
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.training.optim import make_optimizer, param_groups
from nastk.training.schedule import StepwiseCosine, cosine_lr, set_lr
from nastk.training.step import Diverged, OptimizerStep, finite_loss

CPU = torch.device("cpu")
TINY_CNN = {"stages": 2, "depths": [1], "widths": [8, 16], "kernels": [3], "expansions": [1]}


class Net(nn.Module):
    """A body (conv + batch norm) and a head (linear), like a task's model."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _ids(params) -> list[int]:
    return [id(p) for p in params]


# -- parameter groups and the optimiser --------------------------------------------------------
def test_param_groups_split_by_part_and_into_decayed_and_not_decayed():
    net = Net()
    conv_w, conv_b = net.body[0].weight, net.body[0].bias
    bn_w, bn_b = net.body[1].weight, net.body[1].bias
    groups = param_groups(net, 0.01, {"body": 0.1}, split_no_decay=True)
    # the rest (multiplier 1) first, then the parts named, each decayed then not decayed
    assert [(g["lr_mult"], g["weight_decay"]) for g in groups] == [
        (1.0, 0.01), (1.0, 0.0), (0.1, 0.01), (0.1, 0.0)]
    assert [_ids(g["params"]) for g in groups] == [
        _ids([net.head.weight]), _ids([net.head.bias]), _ids([conv_w]),
        _ids([conv_b, bn_w, bn_b])]
    whole = param_groups(net, 0.01, {}, split_no_decay=False)
    assert len(whole) == 1 and _ids(whole[0]["params"]) == _ids(net.parameters())
    assert whole[0]["weight_decay"] == 0.01 and whole[0]["lr_mult"] == 1.0
    net.head.bias.requires_grad_(False)  # frozen parameters are not optimised
    frozen = param_groups(net, 0.0, {}, split_no_decay=False)[0]["params"]
    assert id(net.head.bias) not in _ids(frozen) and len(frozen) == len(whole[0]["params"]) - 1


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_make_optimizer_starts_every_group_at_its_multiple_of_the_rate(kind):
    net = Net()
    opt = make_optimizer(param_groups(net, 1e-3, {"body": 0.25}, split_no_decay=False), kind,
                         lr=0.2, momentum=0.9, nesterov=True, foreach=True)
    assert type(opt).__name__.lower() == kind
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2 * 0.25]
    assert all(g["foreach"] is True and g["weight_decay"] == 1e-3 for g in opt.param_groups)
    if kind == "sgd":
        assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
        plain = make_optimizer(param_groups(net, 0.0, {}, split_no_decay=False), "sgd", lr=0.1,
                               momentum=0.0, nesterov=True)
        assert plain.param_groups[0]["nesterov"] is False  # torch refuses nesterov without it


# -- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("total", [1, 2, 7, 100])
def test_stepwise_cosine_is_torchs_cosine_annealing_bit_for_bit(total):
    ours_net, torch_net = Net(), Net()
    ours = make_optimizer(param_groups(ours_net, 0.0, {"body": 0.3}, split_no_decay=False),
                          "adam", lr=3e-3)
    reference = torch.optim.Adam([{"params": list(torch_net.head.parameters()), "lr": 3e-3},
                                  {"params": list(torch_net.body.parameters()),
                                   "lr": 3e-3 * 0.3}], lr=3e-3)
    schedule = StepwiseCosine(ours, total)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=total)
    for _ in range(total):
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in reference.param_groups]
        reference.step()
        annealing.step()
        schedule.advance()
    assert [g["lr"] for g in ours.param_groups] == [0.0, 0.0]
    schedule.advance()  # past the end the rate stays at 0
    assert [g["lr"] for g in ours.param_groups] == [0.0, 0.0]


def test_both_arithmetics_draw_the_same_half_cosine():
    opt = make_optimizer(param_groups(Net(), 0.0, {}, split_no_decay=False), "sgd", lr=0.1)
    schedule = StepwiseCosine(opt, 40)
    for step in range(41):
        assert opt.param_groups[0]["lr"] == pytest.approx(cosine_lr(0.1, step / 40), abs=1e-15)
        schedule.advance()
    assert cosine_lr(0.1, 0.0) == 0.1 and cosine_lr(0.1, 0.5) == pytest.approx(0.05)
    assert cosine_lr(0.1, 1.0) == 0.0 and cosine_lr(0.1, 1.7) == 0.0
    with pytest.raises(ValueError, match="at least one step"):
        StepwiseCosine(opt, 0)


def test_set_lr_gives_each_group_its_multiple():
    opt = make_optimizer(param_groups(Net(), 0.0, {"body": 0.1}, split_no_decay=True), "sgd",
                         lr=1.0)
    assert set_lr(opt, 0.5) == 0.5
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5, 0.05, 0.05]


# -- one step -----------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [None, 0.05])
def test_an_fp32_step_is_plain_backward_clip_and_step(clip):
    torch.manual_seed(0)
    net = Net()
    ref = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    stepper = OptimizerStep(net, opt, CPU, "fp32", clip)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    for _ in range(3):
        stepper.zero_grad()
        with stepper.autocast():
            for half in (slice(0, 4), slice(4, 8)):  # gradients of several losses add up
                stepper.backward(nn.functional.cross_entropy(net(x[half]), y[half]))
        stepper.step()
        ref_opt.zero_grad(set_to_none=True)
        for half in (slice(0, 4), slice(4, 8)):
            nn.functional.cross_entropy(ref(x[half]), y[half]).backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(ref.parameters(), clip)
        ref_opt.step()
    for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not stepper.scaling.enabled


def test_bf16_steps_run_under_autocast_on_the_cpu():
    net = Net()
    stepper = OptimizerStep(net, torch.optim.SGD(net.parameters(), lr=0.1), CPU, "bf16", 1.0)
    with stepper.autocast():
        out = net(torch.randn(2, 1, 6, 6))
    assert out.dtype == torch.bfloat16


def test_finite_loss_returns_the_value_or_names_the_divergence():
    assert finite_loss(torch.tensor(1.5), "step 1") == 1.5
    with pytest.raises(Diverged) as err:
        finite_loss(torch.tensor(math.nan), "step 3",
                    terms={"box": torch.tensor(math.inf), "cls": torch.tensor(0.5)})
    assert str(err.value) == "diverged: loss became nan at step 3 (terms: {'box': inf, 'cls': 0.5})"
    assert isinstance(err.value, NastkError)  # a Ray worker's failure a restart would repeat
    with pytest.raises(Diverged, match=r"^supernet training diverged: largest subnet loss became "
                                       r"inf at epoch 2; lower the rate$"):
        finite_loss(torch.tensor(math.inf), "epoch 2", what="largest subnet loss",
                    run="supernet training", hint="lower the rate")


# -- the train evaluator's whole loop ---------------------------------------------------------
def test_the_train_evaluator_trains_what_plain_torch_code_trains():
    task = ClassificationTask(dataset="synthetic", n_samples=80, image_size=8, num_classes=3)
    space = SmallCNNSpace(**TINY_CNN)
    config = TrainConfig(steps=7, batch_size=16, lr=0.01, grad_clip=0.5, lr_mult={"body": 0.5},
                         weight_decay=1e-4, latency=False, recalibrate_bn=False)
    evaluator = TrainEvaluator(task, space, config)
    torch.manual_seed(0)
    model = task.build_model(space, space.sample(np.random.default_rng(1)))
    ref = copy.deepcopy(model)
    fit = evaluator.fit(model, seed=3)
    # the same training written out in torch: Adam over (head, body at half the rate), the
    # rate annealed by torch's CosineAnnealingLR after every step, gradients clipped
    head = [p for n, p in ref.named_parameters() if not n.startswith("body.")]
    opt = torch.optim.Adam([{"params": head, "lr": 0.01, "weight_decay": 1e-4},
                            {"params": list(ref.body.parameters()), "lr": 0.005,
                             "weight_decay": 1e-4}], lr=0.01, foreach=True)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    loader = evaluator._train_loader(task.splits()["train"], torch.Generator().manual_seed(3))
    ref.train()
    losses, step = [], 0
    while step < 7:
        for x, y in loader:
            loss = task.loss(ref(x), y)
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            opt.step()
            annealing.step()
            step += 1
            if step == 7:
                break
    assert fit.steps == 7
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    per_epoch = len(loader)
    assert fit.train_loss == pytest.approx(np.mean(losses[-per_epoch:]), rel=1e-12)
