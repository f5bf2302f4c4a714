"""Costs: parameter and FLOP counts against hand-computed values, latency."""

from __future__ import annotations

import pytest
from torch import nn

from nastk.evaluation.cost import count_flops, count_params, measure_latency_ms, model_costs


def _small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*3*3*3 weights + 8 biases = 224
        nn.BatchNorm2d(8),  # 8 weights + 8 biases = 16
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),  # 8*4 + 4 = 36
    )


def test_params_of_small_conv_net():
    assert count_params(_small_net()) == 224 + 16 + 36


def test_shared_parameters_counted_once():
    lin = nn.Linear(5, 5)  # 30 parameters
    assert count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 30


def test_flops_of_single_conv_are_multiply_adds():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # output 8 x 10 x 10, each output one 3*3*3 dot product: one flop per multiply-add
    assert count_flops(conv, (3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3


def test_flops_of_strided_grouped_conv():
    conv = nn.Conv2d(4, 8, 3, stride=2, groups=2, bias=False)
    # output 8 x 4 x 4 ((9 - 3) // 2 + 1 = 4), each output sums over 4/2 input channels
    assert count_flops(conv, (4, 9, 9)) == 8 * 4 * 4 * 2 * 3 * 3


def test_flops_of_linear():
    assert count_flops(nn.Linear(7, 3), (7,)) == 21


def test_latency_positive_and_mode_restored():
    net = _small_net().train()
    ms = measure_latency_ms(net, (3, 10, 10), repeats=3, warmup=1)
    assert ms > 0
    assert net.training
    count_flops(net, (3, 10, 10))
    assert net.training


def test_latency_rejects_zero_repeats():
    with pytest.raises(ValueError):
        measure_latency_ms(_small_net(), (3, 10, 10), repeats=0)


def test_model_costs_keys():
    costs = model_costs(_small_net(), (3, 10, 10), repeats=2)
    assert set(costs) == {"params", "flops", "latency_ms"}
    assert costs["params"] == 276 and costs["flops"] > 0 and costs["latency_ms"] > 0
    assert set(model_costs(_small_net(), (3, 10, 10), latency=False)) == {"params", "flops"}
